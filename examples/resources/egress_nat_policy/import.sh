# Import a policy by name.
terraform import egress_nat_policy.egress egress

# Or, with Terraform 1.5 and later, in configuration:
#   import {
#     to = egress_nat_policy.egress
#     id = "egress"
#   }
#
# Or, with Terraform 1.12 and later, by resource identity (its name):
#   import {
#     to       = egress_nat_policy.egress
#     identity = { name = "egress" }
#   }
