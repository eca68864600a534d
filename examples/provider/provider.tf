terraform {
  required_providers {
    egress = {
      source = "egressnat/egress"
    }
  }
}

# Agents of the cluster, tried in order: a unix socket (egress-agent --socket) or host:port
# (egress-agent --listen). Calls fail over to the next one when an agent is down.
# Omit `endpoints` to use the EGRESS_ENDPOINTS environment variable (comma-separated);
# `endpoint = "..."` is the one-agent form.
provider "egress" {
  endpoints = ["unix:///run/egress/agent.sock", "192.0.2.12:7443", "192.0.2.13:7443"]
  timeout   = 10 # seconds per call; a resource's `timeouts` block bounds a whole operation
}
