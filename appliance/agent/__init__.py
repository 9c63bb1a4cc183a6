"""The workspace agent: runs inside a workspace and dials out to the relay (arrives with the relay issue).

It is built into its own executable and runs where there is no database and no control plane
code, so it may import only appliance.sdk and the relay's framing; an import-linter contract in
pyproject.toml holds it to that from its first line.
"""
