"""`appliance provisionerd start`: an external provisioner daemon (its own user, no database access)."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from types import FrameType
from typing import Any

import click

from appliance.errors import ConfigError
from appliance.logs import configure_logging
from appliance.provisionerd.cliconfig import filesystem_mirror_config, network_mirror_config
from appliance.provisionerd.daemon import Daemon
from appliance.provisionerd.remote import RemoteBackend
from appliance.provisionerd.runner import JobRunner, RunnerSettings
from appliance.provisionerd.sandbox import SANDBOX_UID_BASE, Sandbox


@click.group()
def provisionerd() -> None:
    """Run provisioner daemons outside the server process."""


def _tags(pairs: tuple[str, ...]) -> dict[str, str]:
    tags = {"scope": "site"}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--tag")
        tags[key] = value
    return tags


def _read_key(path: Path) -> str:
    try:
        key = path.read_text().strip()
    except OSError as err:
        raise ConfigError(f"Cannot read the provisioner key {path}: {err.strerror}.",
                          "Point --psk-file at the file holding provisioner_psk (readable by this user).") from err
    if len(key) < 32:
        raise ConfigError(f"The provisioner key in {path} is shorter than 32 characters.",
                          "Copy the server's provisioner_psk into it.")
    return key


def _sandbox(uid: int, cli_config: Path, **options: Any) -> Sandbox:
    try:
        return Sandbox(uid, cli_config, **options)
    except ValueError as err:
        raise ConfigError(f"--sandbox-uid {uid} cannot be used: {err}.",
                          "Pick a uid no account uses, neither 0 nor the daemon's own.") from err


@provisionerd.command()
@click.option("--url", envvar="APPLIANCE_URL", required=True, help="The control plane's URL [env APPLIANCE_URL].")
@click.option("--psk-file", type=click.Path(path_type=Path, dir_okay=False), envvar="APPLIANCE_PROVISIONER_PSK_FILE",
              required=True, help="File holding the pre-shared key [env APPLIANCE_PROVISIONER_PSK_FILE].")
@click.option("--work-dir", type=click.Path(path_type=Path, file_okay=False),
              default=Path("/var/lib/appliance/provisioner"), show_default=True, envvar="APPLIANCE_PROVISIONER_DIR",
              help="Per-job working directories go here.")
@click.option("--mirror", "mirror", default=None,
              help="Provider mirror: a local mirror directory (DIR/mirror) or the appliance URL for its network "
                   "mirror [default: the network mirror at --url].")
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              envvar="APPLIANCE_CA_FILE", help="CA certificate that signed the control plane's TLS certificate.")
@click.option("--runtime-socket", type=click.Path(path_type=Path, dir_okay=False), default=None,
              envvar="APPLIANCE_RUNTIME_SOCKET",
              help="The runtime service's socket on this host; bound into the sandbox of workspace builds only "
                   "(templates with podman resources need it) [env APPLIANCE_RUNTIME_SOCKET].")
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE tag; the daemon runs only jobs whose tags it has.")
@click.option("--name", default=None, help="Daemon name shown to admins [default: host name].")
@click.option("--heartbeat", type=float, default=10.0, show_default=True,
              help="Most seconds between heartbeats (the control plane may ask for more often).")
@click.option("--sandbox-uid", type=click.IntRange(1, 2**31 - 1), default=SANDBOX_UID_BASE + 1000, show_default=True,
              envvar="APPLIANCE_PROVISIONER_SANDBOX_UID",
              help="The uid terraform runs under (no account needed; never root or the daemon's own uid) "
                   "[env APPLIANCE_PROVISIONER_SANDBOX_UID].")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", envvar="APPLIANCE_LOG_FORMAT",
              show_default=True, help="Log lines as text or JSON [env APPLIANCE_LOG_FORMAT].")
def start(url: str, psk_file: Path, work_dir: Path, mirror: str | None, ca_file: Path | None,
          runtime_socket: Path | None, tags: tuple[str, ...], name: str | None, heartbeat: float, sandbox_uid: int,
          log_format: str) -> None:
    """Claim jobs from the control plane and run terraform for them until stopped (SIGTERM)."""
    configure_logging(log_format)
    key = _read_key(psk_file)
    backend = RemoteBackend(url, key, name=name or socket.gethostname(), tags=_tags(tags),
                            ca_file=str(ca_file) if ca_file else None)
    if mirror and not mirror.startswith(("http://", "https://")):
        cli_config = filesystem_mirror_config(work_dir, Path(mirror))
        sandbox = _sandbox(sandbox_uid, cli_config, mirror_dir=Path(mirror), ca_file=ca_file,
                           runtime_socket=runtime_socket)
    else:  # terraform installs providers over HTTPS from the appliance: the sandbox keeps the host's network
        cli_config = network_mirror_config(work_dir, mirror or url)
        sandbox = _sandbox(sandbox_uid, cli_config, ca_file=ca_file, network=True, runtime_socket=runtime_socket)
    settings = RunnerSettings(work_dir, sandbox, heartbeat_interval=heartbeat)
    daemon = Daemon(backend, JobRunner(backend, settings))

    def stop(signum: int, frame: FrameType | None) -> None:
        daemon.stop()  # first: if stderr is a closed pipe the echo below raises, and the daemon must still stop
        click.echo(f"{signal.Signals(signum).name}: stopping after the current job.", err=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    click.echo(f"Provisioner daemon {backend.daemon_id} polling {url} (work dir {work_dir}).", err=True)
    daemon.run_forever()
