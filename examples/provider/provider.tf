terraform {
  required_providers {
    egress = {
      source = "egressnat/egress"
    }
  }
}

# The agent's gRPC endpoint: its unix socket (egress-agent --socket), or host:port.
# Omit `endpoint` to use the EGRESS_ENDPOINT environment variable.
provider "egress" {
  endpoint = "unix:///run/egress/agent.sock"
  timeout  = 10
}
