"""Listening ports: the TCP ports something listens on inside the workspace, reported when the set changes.

Read from the kernel's socket tables (/proc/net/tcp and tcp6: one row per socket, the local address
as HEXIP:HEXPORT in column 1, the state in column 3 with 0A for LISTEN, the socket inode in column 9).
A port's process name comes from the /proc/PID/fd link that names its inode (socket:[INODE]), best
effort: another user's processes cannot be read. The agent's own sockets are left out.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from appliance.errors import OperatorError
from appliance.sdk.agents import MAX_LISTENING_PORTS, ListeningPort

log = logging.getLogger("appliance.agent.ports")

PROC = Path("/proc")
TABLES = ("net/tcp", "net/tcp6")
LISTEN = "0A"  # TCP_LISTEN in the st column
POLL_SECONDS = 2.0
SOCKET_LINK = "socket:["  # how /proc/PID/fd/N reads for a socket: socket:[INODE]

Send = Callable[[list[ListeningPort]], Awaitable[None]]


def listening_sockets(table: str) -> dict[int, set[int]]:
    """Port -> inodes of the LISTEN sockets in one /proc/net/tcp(6) table."""
    found: dict[int, set[int]] = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        port = int(fields[1].rpartition(":")[2], 16)
        found.setdefault(port, set()).add(int(fields[9]))
    return found


def merged(tables: Iterable[str]) -> dict[int, set[int]]:
    ports: dict[int, set[int]] = {}
    for table in tables:
        for port, inodes in listening_sockets(table).items():
            ports.setdefault(port, set()).update(inodes)
    return ports


def socket_owners(inodes: set[int], proc: Path = PROC) -> dict[int, tuple[int, str]]:
    """Inode -> (pid, process name) for the inodes some readable process holds open."""
    owners: dict[int, tuple[int, str]] = {}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                link = str(fd.readlink())
                if link.startswith(SOCKET_LINK) and (inode := int(link[len(SOCKET_LINK):-1])) in inodes:
                    owners[inode] = (int(pid_dir.name), (pid_dir / "comm").read_text().strip())
        except (OSError, ValueError):  # gone meanwhile, or another user's: best effort
            continue
    return owners


def ports_of(sockets: dict[int, set[int]], owners: dict[int, tuple[int, str]], own_pid: int) -> list[ListeningPort]:
    """The ports to report, lowest first and at most MAX_LISTENING_PORTS, without the agent's own."""
    ports = []
    for port in sorted(sockets):
        held = [owners[i] for i in sorted(sockets[port]) if i in owners]
        if held and all(pid == own_pid for pid, _ in held):
            continue
        ports.append(ListeningPort(port=port, process_name=next((name for _, name in held), "")[:128]))
    return ports[:MAX_LISTENING_PORTS]


def read_tables(proc: Path = PROC) -> dict[int, set[int]]:
    texts = []
    for table in TABLES:
        try:
            texts.append((proc / table).read_text())
        except OSError:  # no IPv6 in this namespace
            continue
    return merged(texts)


def named_ports(sockets: dict[int, set[int]], proc: Path = PROC) -> list[ListeningPort]:
    return ports_of(sockets, socket_owners(set().union(*sockets.values()), proc), os.getpid())


async def report_listening_ports(send: Send, interval: float = POLL_SECONDS) -> None:
    """Send the list whenever the set of ports changes (and once at start); a failed send is tried next round."""
    sent: set[int] | None = None
    while True:
        sockets = await asyncio.to_thread(read_tables)
        if set(sockets) != sent:
            ports = await asyncio.to_thread(named_ports, sockets)  # names only on a change: it reads every fd
            try:
                await send(ports)
                sent = set(sockets)
            except OperatorError as err:
                log.warning("listening_ports_not_sent", extra={"reason": err.message})
        await asyncio.sleep(interval)
