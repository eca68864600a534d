# One node's role, state and the floating IPs it holds.
data "egress_node" "worker1" {
  name       = "worker1"
  depends_on = [egress_gateway.default]
}

output "worker1_floating_ips" {
  value = data.egress_node.worker1.floating_ips
}
