"""The workspace agent: runs inside a workspace, reports to the control plane and dials out to the relay.

It is built into its own executable (appliance/server/agent_binary.py) and runs where there is no
database and no control-plane code, so it imports only appliance.sdk and the relay's wire modules;
an import-linter contract in pyproject.toml holds it to that. docs/adr/0025-workspace-agent.md.

    settings.py      APPLIANCE_AGENT_URL, APPLIANCE_AGENT_TOKEN, SSL_CERT_FILE
    controlplane.py  the agent's API calls, through the sdk's client (retries with jitter)
    startup.py       the startup script, its output streamed to the control plane line by line
    metadata.py      each metadata block's script, every interval
    ports.py         the TCP ports listening in the workspace, reported when they change
    apphealth.py     each app's healthcheck, fetched from inside the workspace; health changes reported
    relay.py         the relay connection: register, connect, heartbeat, reconnect, serve SSH sessions
    main.py          lifecycle: starting -> ready | start_error | start_timeout; SIGTERM -> shutting_down -> off
"""
