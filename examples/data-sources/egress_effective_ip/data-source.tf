# Which source IP does alice's frontend leave with to the partner at 198.51.100.10?
data "egress_effective_ip" "alice" {
  namespace   = "alice"
  pod         = "alice-frontend"
  destination = "198.51.100.10"
}

output "alice_source_ip" {
  # "192.0.2.100" through the policy's gateway node, the node's IP when no policy applies,
  # "" (with dropped = true) when the policy's source IP is held by no node.
  value = data.egress_effective_ip.alice.source_ip
}
