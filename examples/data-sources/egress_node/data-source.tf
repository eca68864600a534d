# One node's role, state, labels and the floating IPs it holds.
data "egress_node" "worker1" {
  name       = "worker1"
  depends_on = [egress_gateway.default]
}

output "worker1_floating_ips" {
  value = data.egress_node.worker1.floating_ips
}

# Its labels (--node-label, or node_labels in its --config, live on SIGHUP), which gateways' node_selector matches.
output "worker1_labels" {
  value = data.egress_node.worker1.labels
}

# The cluster service CIDRs its egress-agent was given (--service-cidr): never steered.
output "worker1_service_cidrs" {
  value = data.egress_node.worker1.service_cidrs
}
