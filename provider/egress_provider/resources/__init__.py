"""One module per Terraform resource type."""
