# The seed's AnthosNetworkGateway "default": three floating IPs on the node subnet.
resource "egress_gateway" "default" {
  name = "default"
  floating_ips = [
    "192.168.1.100",
    "192.168.1.101",
    "192.168.1.102",
  ]
}

# Placement: only nodes whose egress-agent runs with --node-label egress.example.com/gateway=true, in zone a or b,
# hold these IPs, and each node at most one of them (so losing one node loses one IP's traffic, not both).
resource "egress_gateway" "edge" {
  name             = "edge"
  floating_ips     = ["192.168.1.110", "192.168.1.111"]
  max_ips_per_node = 1

  node_selector {
    match_labels = { "egress.example.com/gateway" = "true" }
    match_expressions {
      key      = "topology.kubernetes.io/zone"
      operator = "In"
      values   = ["zone-a", "zone-b"]
    }
  }
}
