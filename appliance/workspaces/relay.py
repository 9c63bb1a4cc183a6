"""The relay as the control plane describes it: the one embedded DERP region, and the counters relays write."""

from __future__ import annotations

from urllib.parse import urlsplit

from appliance.db.database import Connection, Row
from appliance.sdk.agents import REGION_CODE, REGION_ID, REGION_NAME, RELAY_PATH, DerpMap, DerpNode, DerpRegion

_DEFAULT_PORTS = {"https": 443, "http": 80}


def derp_map(access_url: str) -> DerpMap:
    """Region 999 with one node: the access URL's host and port, relay at <access URL>/derp, no STUN."""
    parts = urlsplit(access_url)
    node = DerpNode(Name=f"{REGION_ID}a", RegionID=REGION_ID, HostName=parts.hostname or "",
                    DERPPort=parts.port or _DEFAULT_PORTS.get(parts.scheme, 443), STUNPort=-1,
                    ForceHTTP=parts.scheme == "http")
    region = DerpRegion(RegionID=REGION_ID, RegionCode=REGION_CODE, RegionName=REGION_NAME, Nodes=[node])
    return DerpMap(Regions={str(REGION_ID): region}, RelayURL=access_url.rstrip("/") + RELAY_PATH)


def relay_stats(conn: Connection) -> list[Row]:
    """Each relay's row of live counters, as it last wrote them."""
    return conn.execute("SELECT * FROM relay_stats ORDER BY relay_name").fetchall()
