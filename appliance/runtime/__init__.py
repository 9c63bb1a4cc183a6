"""The runtime service: owns rootful podman and lets a workspace build do only what the policy allows."""
