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

# Everything that leaves the cluster, except one partner network, leaves with
# 192.168.1.101. Cluster-internal traffic (pod CIDRs, the agents' --service-cidr,
# node subnets) is never steered. Where this overlaps "egress" above for the same
# pods, the lower priority number wins (default 1000).
resource "egress_nat_policy" "default_route" {
  name = "default-route"

  egress {
    namespace_selector {
      match_labels = { user = "alice" }
    }
  }

  destination_cidrs = ["0.0.0.0/0"]
  excluded_cidrs    = ["203.0.113.0/24"] # leaves with the node IP
  egress_source_ip  = "192.168.1.101"
  priority          = 2000 # "egress" (1000) keeps 8.8.8.0/24 for the frontends

  depends_on = [egress_gateway.default]
}

# No egress_source_ip: the agent allocates a free floating IP of gateway "edge" (the lowest one no other
# policy uses) when the policy is created; the plan shows it as (known after apply), and it stays this
# policy's until the policy is deleted or names another gateway. Referring to the gateway's name makes
# Terraform create the gateway first.
resource "egress_nat_policy" "reports" {
  name = "reports"

  egress {
    pod_selector {
      match_labels = { app = "reports" }
    }
  }

  destination_cidrs = ["198.51.100.0/24"]
  gateway           = egress_gateway.edge.name
}
