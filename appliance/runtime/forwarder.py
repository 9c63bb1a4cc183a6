"""Lets containers reach the access URL, even a loopback one, without host networking (docs/adr/0019).

One TCP listener on the podman bridge's gateway address, at the access URL's port, that forwards
every connection to the access URL's host and port, and nowhere else. It binds with IP_FREEBIND,
so it can listen before podman has created the bridge. Containers reach it as
host.containers.internal (and as the access URL's host name, which podman maps to the gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from appliance.runtime.podman import Podman

log = logging.getLogger(__name__)

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # linux/in.h; Python exposes it only on some builds
CONTAINER_HOST_NAME = "host.containers.internal"
_DEFAULT_NETWORK = "podman"
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    @classmethod
    def of_url(cls, url: str) -> Target:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.hostname or "127.0.0.1", port)

    @property
    def is_name(self) -> bool:
        """True when the host is a DNS name rather than an address (containers then need a host entry)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False


async def gateway_address(podman: Podman, network: str = _DEFAULT_NETWORK) -> str:
    """The bridge gateway of podman's default network (10.88.0.1 unless the host changed it)."""
    found = json.loads(await podman.run("network", "inspect", "--format", "json", network))
    for subnet in found[0].get("subnets", []):
        gateway = subnet.get("gateway")
        if gateway and ipaddress.ip_address(gateway).version == 4:
            return str(gateway)
    raise ValueError(f"podman network {network!r} has no IPv4 gateway")


def add_host_arguments(target: Target, gateway: str) -> list[str]:
    """The --add-host entries every container gets so the access URL resolves to the forwarder."""
    hosts = [CONTAINER_HOST_NAME] + ([target.host] if target.is_name and target.host != "localhost" else [])
    return [argument for host in hosts for argument in ("--add-host", f"{host}:{gateway}")]


def bind_freely(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
    try:
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Forwarder:
    """Accepts on gateway:port and pipes each connection to `target`, both ways, until either side closes."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._server: asyncio.Server | None = None

    async def start(self, gateway: str) -> bool:
        """Listen on the gateway; False (logged) when the port is taken there, e.g. the server listens on 0.0.0.0."""
        try:
            sock = bind_freely(gateway, self.target.port)
        except OSError as err:
            log.warning("forwarder_not_started", extra={"address": f"{gateway}:{self.target.port}",
                                                        "reason": err.strerror})
            return False
        self._server = await asyncio.start_server(self._forward, sock=sock)
        log.info("forwarder_started", extra={"listen": f"{gateway}:{self.target.port}",
                                             "target": f"{self.target.host}:{self.target.port}"})
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.target.host, self.target.port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for side in (writer, upstream_writer):
                side.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close, so a request-then-read client still gets its answer."""
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
