# A complete example: the seed's gateway and policy on documentation address
# ranges (node network 192.0.2.0/24, destinations 198.51.100.0/24), and where
# the agent put the floating IPs.
#
#   export EGRESS_ENDPOINT=unix:///run/egress/agent.sock   # or -var endpoint=...
#   terraform init && terraform apply

terraform {
  required_providers {
    egress = {
      source = "egressnat/egress"
    }
  }
}

variable "endpoint" {
  description = "egress-agent gRPC target (unix:///path or host:port); null uses EGRESS_ENDPOINT."
  type        = string
  default     = null
}

variable "node" {
  description = "A node to show (egress-agent --node)."
  type        = string
  default     = "worker1"
}

provider "egress" {
  endpoint = var.endpoint
}

resource "egress_gateway" "default" {
  name         = "default"
  floating_ips = ["192.0.2.100", "192.0.2.101", "192.0.2.102"]
}

# Pods labelled role=frontend in namespaces labelled user=alice or user=paul
# reach 198.51.100.0/24 from 192.0.2.100.
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

  destination_cidrs = ["198.51.100.0/24"]
  egress_source_ip  = "192.0.2.100"

  depends_on = [egress_gateway.default]
}

data "egress_gateway_status" "default" {
  name = egress_gateway.default.name
}

data "egress_node" "this" {
  name       = var.node
  depends_on = [egress_gateway.default]
}

output "gateway_nodes" {
  description = "Nodes taking part, Up or Down."
  value       = data.egress_gateway_status.default.nodes
}

output "floating_ips" {
  description = "Floating IP -> node holding it (\"\" when none can)."
  value       = data.egress_gateway_status.default.floating_ips
}

output "node" {
  description = "The chosen node and the floating IPs it holds."
  value = {
    name         = data.egress_node.this.name
    role         = data.egress_node.this.role
    state        = data.egress_node.this.state
    node_ip      = data.egress_node.this.node_ip
    floating_ips = data.egress_node.this.floating_ips
  }
}
