"""`appliance server`: the control plane's process tree in one command (embedded quickstart)."""
