"""--tcp values of `appliance port-forward`: single ports, an IP, IPv6, ranges, and what is refused."""

from __future__ import annotations

import click
import pytest

from appliance.cli.port_forward import Forward, parse_forwards

pytestmark = pytest.mark.unit


def test_a_port_pair_listens_on_loopback_by_default() -> None:
    assert parse_forwards(["8080:80"]) == [Forward("127.0.0.1", 8080, 80)]


def test_an_address_and_ranges_expand_to_one_forward_per_port() -> None:
    assert parse_forwards(["192.0.2.7:8000-8002:9000-9002", "[::1]:7000:22"]) == [
        Forward("192.0.2.7", 8000, 9000), Forward("192.0.2.7", 8001, 9001), Forward("192.0.2.7", 8002, 9002),
        Forward("::1", 7000, 22)]
    assert str(Forward("::1", 7000, 22)) == "[::1]:7000"


@pytest.mark.parametrize(("specs", "why"), [
    (["8080"], "give LOCAL:REMOTE"),
    (["8000-8005:9000-9003"], "the ranges differ in length (6 local, 4 remote ports)"),
    (["9005-9000:1-6"], "the range 9005-9000 runs backwards"),
    (["70000:80"], "'70000' is not a port (1-65535)"),
    (["0:80"], "'0' is not a port"),
    (["80:x"], "'x' is not a port"),
    (["host:80:80"], "'host' is not an IP address"),
    (["8000:80", "8000:81"], "local port 127.0.0.1:8000 is forwarded twice"),
])
def test_a_bad_value_names_the_flag_and_what_is_wrong(specs: list[str], why: str) -> None:
    with pytest.raises(click.BadParameter) as raised:
        parse_forwards(specs)
    assert why in raised.value.format_message()
    assert raised.value.param_hint == "'--tcp'"
