"""Tiny real Terraform providers for tests, written with the tf framework."""
