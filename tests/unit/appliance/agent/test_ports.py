"""Reading listening ports from the kernel's socket tables, and which of them the agent reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.agent.ports import listening_sockets, merged, ports_of, read_tables
from appliance.sdk.agents import MAX_LISTENING_PORTS, ListeningPort

pytestmark = pytest.mark.unit

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
TCP = HEADER + (
    "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4101 1 0 100 0 0 10 0\n"
    "   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4102 1 0 100 0 0 10 0\n"
    "   2: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 4103 1 0 20 4 30 10\n"
    "   3: 0100007F:1F90 0100007F:9C40 06 00000000:00000000 03:00000F84 00000000     0        0 0 3 0\n")
TCP6 = HEADER + (
    "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A "
    "00000000:00000000 00:00000000 00000000  1000        0 4201 1 0 100 0 0 10 0\n")


def test_only_listening_sockets_count_and_both_tables_merge_by_port() -> None:
    assert listening_sockets(TCP) == {8080: {4101}, 3306: {4102}}
    assert merged([TCP, TCP6]) == {8080: {4101, 4201}, 3306: {4102}}


def test_ports_are_named_by_their_process_and_the_agents_own_are_left_out() -> None:
    sockets = {8080: {4101, 4201}, 3306: {4102}, 5000: {4300}}
    owners = {4101: (20, "python3"), 4102: (7, "appliance-agent"), 4201: (20, "python3")}
    assert ports_of(sockets, owners, own_pid=7) == [ListeningPort(port=5000), ListeningPort(port=8080,
                                                                                           process_name="python3")]


def test_at_most_the_lowest_ports_the_api_takes_are_reported() -> None:
    sockets = {port: {port} for port in range(1, MAX_LISTENING_PORTS + 50)}
    reported = ports_of(sockets, {}, own_pid=1)
    assert len(reported) == MAX_LISTENING_PORTS and reported[-1].port == MAX_LISTENING_PORTS


def test_a_namespace_without_ipv6_reads_the_ipv4_table_alone(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    assert read_tables(tmp_path) == {8080: {4101}, 3306: {4102}}
