# Is the policy working: its source IP held by a node, and every node programmed?
data "egress_policy_status" "frontend" {
  name = egress_nat_policy.frontend.name # read after the policy is applied
}

output "frontend_leaves_from" {
  value = data.egress_policy_status.frontend.holder # e.g. "worker1"
}

# Fails `terraform plan`/`apply` with the reason while the policy is not Ready (e.g. Pending on a node).
check "frontend_ready" {
  assert {
    condition     = data.egress_policy_status.frontend.conditions["Ready"] == "True"
    error_message = "policy frontend is not Ready: ${data.egress_policy_status.frontend.condition_messages["Ready"]}"
  }
}
