"""The agent's SSH server on one socket: only a certificate for this agent logs in; sessions work as in sshd."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncssh
import pytest

from appliance.relay.dial import ECHO, SINK, SOURCE
from appliance.relay.preamble import CERT_PREFIX, MAX_LINE, cert_line
from tests.support.ssh_session import SessionKeys, login, serve, session_over_socketpair

KEYS = SessionKeys()


def run(coro: object) -> object:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


def _certificate_for_another_agent() -> object:
    return [(KEYS.user, KEYS.certificate(principal="agent-2"))]


def _certificate_from_another_ca() -> object:
    return [(KEYS.user, KEYS.certificate(signer=asyncssh.generate_private_key("ssh-ed25519")))]


def _plain_key() -> object:
    return [KEYS.user]


@pytest.mark.parametrize("credentials", [_certificate_for_another_agent, _certificate_from_another_ca, _plain_key],
                         ids=["a certificate for another agent id is refused",
                              "a certificate from another CA is refused",
                              "a key without a certificate is refused"])
def test_only_a_certificate_for_this_agent_logs_in(credentials: object, tmp_path: Path) -> None:
    async def attempt() -> None:
        agent_end, client_end = socket.socketpair()
        server = serve(agent_end, KEYS, str(tmp_path))
        with pytest.raises(asyncssh.PermissionDenied):
            await login(client_end, KEYS, client_keys=credentials())  # type: ignore[operator]
        await asyncio.wait_for(server, 10)  # the server gives up on its own, without raising
    run(attempt())


def test_a_password_is_never_asked_for(tmp_path: Path) -> None:
    async def attempt() -> None:
        agent_end, client_end = socket.socketpair()
        serve(agent_end, KEYS, str(tmp_path))
        with pytest.raises(asyncssh.PermissionDenied):
            await login(client_end, KEYS, client_keys=[], password="guess",
                        preferred_auth="password,keyboard-interactive")
    run(attempt())


def test_exec_runs_in_the_directory_with_the_agent_environment(tmp_path: Path) -> None:
    async def check() -> None:
        async with session_over_socketpair(KEYS, str(tmp_path), {"GREETING": "hello"}) as conn:
            result = await conn.run("pwd; echo $GREETING; echo oops >&2; exit 3")
            assert result.stdout == f"{tmp_path}\nhello\n".encode()
            assert result.stderr == b"oops\n"
            assert result.exit_status == 3
            assert (await conn.run("tty")).stdout == b"not a tty\n"
    run(check())


def test_a_shell_with_a_pty_sees_the_terminal_and_its_term(tmp_path: Path) -> None:
    async def check() -> None:
        async with session_over_socketpair(KEYS, str(tmp_path)) as conn:
            result = await conn.run("tty; echo $TERM; stty size", term_type="xterm-256color", term_size=(100, 40))
            assert isinstance(result.stdout, bytes)
            lines = result.stdout.decode().split()
            assert lines[0].startswith("/dev/pts/")
            assert lines[1:] == ["xterm-256color", "40", "100"]
            process = await conn.create_process(term_type="vt100")  # an interactive shell
            process.stdin.write(b"echo shell-$((6*7))\nexit 0\n")
            output = await process.stdout.read()
            assert b"shell-42" in output
    run(check())


def test_sftp_paths_start_in_the_directory(tmp_path: Path) -> None:
    async def check() -> None:
        async with session_over_socketpair(KEYS, str(tmp_path)) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("notes.txt", "wb") as remote:
                await remote.write(b"written over sftp")
            assert sorted(await sftp.listdir(".")) == [".", "..", "notes.txt"]
    run(check())
    assert (tmp_path / "notes.txt").read_bytes() == b"written over sftp"


def test_forwarding_reaches_workspace_ports_only(tmp_path: Path) -> None:
    async def check() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"from the workspace:" + await reader.readline())
            await writer.drain()
            writer.close()
        listener = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        async with session_over_socketpair(KEYS, str(tmp_path)) as conn:
            reader, writer = await conn.open_connection("127.0.0.1", port)
            writer.write(b"hi\n")
            assert await reader.read() == b"from the workspace:hi\n"
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("192.0.2.1", 22)  # anywhere beyond the workspace
        listener.close()
    run(check())


def test_echo_source_and_sink_serve_ping_and_speedtest(tmp_path: Path) -> None:
    async def check() -> None:
        async with session_over_socketpair(KEYS, str(tmp_path)) as conn:
            echo = await conn.create_process(subsystem=ECHO, encoding=None)
            echo.stdin.write(b"ping-1")
            assert await echo.stdout.readexactly(6) == b"ping-1"
            echo.close()
            sink = await conn.create_process(subsystem=SINK, encoding=None)
            sink.stdin.write(b"x" * 300_000)
            sink.stdin.write_eof()
            assert await sink.stdout.read() == b"300000\n"
            source = await conn.create_process(subsystem=SOURCE, encoding=None)
            assert len(await source.stdout.readexactly(200_000)) == 200_000
            source.close()
    run(check())


def test_after_a_certificate_line_the_certified_key_logs_in_as_openssh_does(tmp_path: Path) -> None:
    async def check() -> None:
        agent_end, client_end = socket.socketpair()
        server = serve(agent_end, KEYS, str(tmp_path))
        client_end.sendall(cert_line(KEYS.certificate().export_certificate().decode()))
        conn = await login(client_end, KEYS, client_keys=[KEYS.user])  # the bare key, as OpenSSH offers it
        result = await conn.run("echo in")
        assert result.stdout == b"in\n"
        conn.close()
        await asyncio.wait_for(server, 10)
    run(check())


def test_a_replayed_certificate_line_without_the_private_key_is_refused(tmp_path: Path) -> None:
    async def attempt() -> None:
        agent_end, client_end = socket.socketpair()
        server = serve(agent_end, KEYS, str(tmp_path))
        client_end.sendall(cert_line(KEYS.certificate().export_certificate().decode()))
        with pytest.raises(asyncssh.PermissionDenied):
            await login(client_end, KEYS, client_keys=[asyncssh.generate_private_key("ssh-ed25519")])
        await asyncio.wait_for(server, 10)
    run(attempt())


@pytest.mark.parametrize("first_bytes", [CERT_PREFIX + b"x" * MAX_LINE, b"GET / HTTP/1.1\r\n\r\n",
                                         CERT_PREFIX + b"garbage\n"],
                         ids=["an endless certificate line", "another protocol", "a malformed certificate line"])
def test_a_stream_that_begins_badly_is_closed_with_a_log_line(first_bytes: bytes, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    async def attempt() -> None:
        agent_end, client_end = socket.socketpair()
        server = serve(agent_end, KEYS, str(tmp_path))
        await asyncio.get_running_loop().sock_sendall(client_end, first_bytes)
        await asyncio.wait_for(server, 10)
        client_end.settimeout(5)
        try:
            answer = client_end.recv(100)
        except ConnectionResetError:  # closed with our bytes unread
            answer = b""
        assert answer == b""  # closed, without a word of SSH
    caplog.set_level("INFO", logger="appliance.agent.sshd")
    run(attempt())
    assert "ssh_preamble_refused" in caplog.text
