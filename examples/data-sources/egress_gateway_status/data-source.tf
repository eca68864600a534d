# Which node holds each floating IP of the gateway "default".
data "egress_gateway_status" "default" {
  name = egress_gateway.default.name # read after the gateway is applied
}

output "floating_ip_holders" {
  value = data.egress_gateway_status.default.floating_ips # e.g. { "192.168.1.100" = "worker1", ... }
}

output "gateway_nodes" {
  value = data.egress_gateway_status.default.nodes # e.g. { worker1 = "Up", worker2 = "Up" }
}

output "gateway_ready" {
  value = data.egress_gateway_status.default.conditions["Ready"] # "True" once every IP is held and programmed
}
