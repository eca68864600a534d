# The seed's EgressNATPolicy "egress": pods labelled role=frontend in namespaces
# labelled user=alice or user=paul, going to 8.8.8.0/24, leave with 192.168.1.100.
resource "egress_nat_policy" "egress" {
  name = "egress"

  egress {
    namespace_selector {
      match_labels = { user = "alice" }
    }
    pod_selector {
      match_labels = { role = "frontend" }
    }
  }

  egress {
    namespace_selector {
      match_labels = { user = "paul" }
    }
    pod_selector {
      match_labels = { role = "frontend" }
    }
  }

  destination_cidrs = ["8.8.8.0/24"]
  egress_source_ip  = "192.168.1.100" # one of egress_gateway.default's floating_ips

  depends_on = [egress_gateway.default]
}
