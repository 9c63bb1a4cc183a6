"""The health probe's identity on the relay and the gateway: keys and a token minted from one site secret.

The derp health check needs two relay clients that may exchange packets without a workspace. Both
node keys derive from the site secret `health_probe` (generated once in PostgreSQL, site_secrets),
so every process that can read the database mints the same pair: the relay admits it as the one
pair of kind "probe" (admission.py), and the health check dials with it. The gateway's WebSocket
echo accepts a token derived from the same secret. See docs/adr/0043.
"""

from __future__ import annotations

import hashlib
import hmac

from nacl.public import PrivateKey

from appliance.db.database import Database
from appliance.db.site_secrets import site_secret
from appliance.relay.keys import NodeKey

SECRET_NAME = "health_probe"  # noqa: S105 -- the site_secrets row's name, not a secret
KIND = "probe"  # relay_peers never holds this kind: the pair lives in the relay's memory only
PAIR_ID = "health-probe"
HEADER = "X-Appliance-Health-Probe"  # the gateway's WebSocket echo: this token instead of a login


def probe_secret(db: Database) -> bytes:
    return site_secret(db, SECRET_NAME)


def _derive(secret: bytes, label: bytes) -> bytes:
    return hmac.new(secret, label, hashlib.sha256).digest()


def probe_keys(secret: bytes) -> tuple[NodeKey, NodeKey]:
    """The probe's two relay clients: the one that sends and the one that echoes."""
    return (NodeKey(PrivateKey(_derive(secret, b"relay-probe-a"))),
            NodeKey(PrivateKey(_derive(secret, b"relay-probe-b"))))


def websocket_token(secret: bytes) -> str:
    return _derive(secret, b"gateway-websocket-echo").hex()


def is_websocket_token(secret: bytes, presented: str) -> bool:
    return hmac.compare_digest(websocket_token(secret), presented)
