"""The DERP relay: every byte between a client and a workspace agent, admitted by the control plane.

Wire modules, safe for the agent and the CLI (no database, no web server; an import-linter
contract holds them to it): frames.py (the byte layouts), keys.py (node keys, NaCl box),
client.py (a DERP client over `Upgrade: DERP` or WebSocket) and stream.py (ordered byte streams
to one peer over a client, for SSH to run on).

Server modules: server.py (the relay on asyncio), admission.py (the keys the control plane
vouches for, followed through NOTIFY relay_peers), limits.py (token buckets, accept limits),
http.py (the /derp routes the gateway mounts), stats.py (counters for the console and metrics).
See docs/adr/0023.
"""
