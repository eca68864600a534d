# The seed's AnthosNetworkGateway "default": three floating IPs on the node subnet.
resource "egress_gateway" "default" {
  name = "default"
  floating_ips = [
    "192.168.1.100",
    "192.168.1.101",
    "192.168.1.102",
  ]
}
