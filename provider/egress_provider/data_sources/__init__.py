"""One module per Terraform data source."""
