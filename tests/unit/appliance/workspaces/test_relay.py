"""The DERP map: one embedded region, described from the access URL."""

from __future__ import annotations

import pytest

from appliance.workspaces.relay import derp_map

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("url", "host", "port", "force_http", "relay"), [
    ("https://coder.example.org", "coder.example.org", 443, False, "https://coder.example.org/derp"),
    ("https://coder.example.org:8443/", "coder.example.org", 8443, False, "https://coder.example.org:8443/derp"),
    ("http://127.0.0.1:3000", "127.0.0.1", 3000, True, "http://127.0.0.1:3000/derp"),
    ("http://[::1]", "::1", 80, True, "http://[::1]/derp"),
])
def test_the_one_region_is_the_access_url(url: str, host: str, port: int, force_http: bool, relay: str) -> None:
    found = derp_map(url)
    assert list(found.Regions) == ["999"]
    region = found.Regions["999"]
    assert (region.RegionID, region.EmbeddedRelay) == (999, True)
    [node] = region.Nodes
    assert (node.HostName, node.DERPPort, node.STUNPort, node.ForceHTTP) == (host, port, -1, force_http)
    assert found.RelayURL == relay
