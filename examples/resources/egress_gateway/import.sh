# Import a gateway by name.
terraform import egress_gateway.default default

# Or, with Terraform 1.5 and later, in configuration:
#   import {
#     to = egress_gateway.default
#     id = "default"
#   }
#
# Or, with Terraform 1.12 and later, by resource identity (its name):
#   import {
#     to       = egress_gateway.default
#     identity = { name = "default" }
#   }
