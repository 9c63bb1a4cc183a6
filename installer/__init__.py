"""appliance-installer: verify a signed bundle, preflight, install, upgrade, roll back (offline host)."""
