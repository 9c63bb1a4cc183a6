"""Workspaces: created from a template, changed only by builds the provisioner runs."""
