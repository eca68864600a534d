# One node's role, state, labels and the floating IPs it holds.
data "egress_node" "worker1" {
  name       = "worker1"
  depends_on = [egress_gateway.default]
}

output "worker1_floating_ips" {
  value = data.egress_node.worker1.floating_ips
}

# The labels its egress-agent runs with (--node-label), which gateways' node_selector matches.
output "worker1_labels" {
  value = data.egress_node.worker1.labels
}
