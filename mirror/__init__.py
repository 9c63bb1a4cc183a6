"""The Terraform provider network mirror and registry: build, hash, sign, verify, serve."""
