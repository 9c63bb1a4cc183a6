"""`appliance config-ssh`: a marked block of `Host appliance.<workspace>` entries in ~/.ssh/config (ADR 0029).

Each entry runs `appliance ssh --stdio` as OpenSSH's ProxyCommand, logs in with the per-user client
key (made on first use under the CLI's config dir) and checks the agent's host key against a
known_hosts file of its own, which that ProxyCommand writes from the pairing before it relays a byte.
The block is rewritten whole on every run; everything outside the markers stays as it was.
"""

from __future__ import annotations

import difflib
import os
import shlex
import sys
from pathlib import Path

import asyncssh
import click

from appliance.cli.client import ApiClient, with_client
from appliance.cli.session_store import CONFIG_DIR_ENV, config_dir
from appliance.errors import OperatorError
from appliance.sdk.workspaces import WorkspaceListResponse

START = "# ------------START-APPLIANCE-----------"
END = "# ------------END-APPLIANCE------------"
HOST_PREFIX = "appliance."  # `ssh appliance.<workspace>`
NOTE = "# Written by 'appliance config-ssh'; run it again after creating or deleting workspaces. Edits are lost."


def key_path() -> Path:
    """The per-user client key OpenSSH logs in with: pairing certifies it for one agent at a time."""
    return config_dir() / "ssh" / "id_ed25519"


def known_hosts_path(alias: str) -> Path:
    """One known_hosts file per Host alias, written by `ssh --stdio` from the host key pairing returned."""
    return config_dir() / "ssh" / "known_hosts" / alias


def ensure_client_key() -> asyncssh.SSHKey:
    """The client key, made on first use (0600 from the first byte, in a 0700 folder)."""
    path = key_path()
    if path.exists():
        return asyncssh.read_private_key(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="appliance ssh client key")
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.export_private_key("openssh"))
    try:
        os.link(temp, path)  # two first runs at once: whichever linked first wins, both use it
    except FileExistsError:
        pass
    finally:
        temp.unlink(missing_ok=True)
    key = asyncssh.read_private_key(path)
    path.with_suffix(".pub").write_bytes(key.export_public_key("openssh"))
    return key


def write_known_host(alias: str, host_key: str) -> None:
    """Pin the agent's host key for `alias`: replaced atomically, so a concurrent reader sees old or new."""
    path = known_hosts_path(alias)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(f".{alias}.{os.getpid()}.tmp")
    temp.write_text(f"{alias} {host_key.strip()}\n")
    temp.replace(path)


def workspace_of(host: str) -> str:
    """The workspace a Host alias names: appliance.<workspace>, or the bare name."""
    return host.removeprefix(HOST_PREFIX)


def _quoted(path: Path) -> str:
    return '"' + str(path).replace('"', '\\"') + '"'


def proxy_command(alias: str) -> str:
    """This very CLI, by absolute path (not resolved: /opt/appliance/current must keep following upgrades)."""
    program = Path(sys.argv[0]).absolute()
    runs = [sys.executable, "-m", "appliance"] if program.name == "__main__.py" else [str(program)]
    return shlex.join([*runs, "ssh", "--stdio", "--config-dir", str(config_dir()), alias])


def host_entry(workspace: str) -> list[str]:
    alias = HOST_PREFIX + workspace
    return [f"Host {alias}",
            f"  ProxyCommand {proxy_command(alias)}",
            f"  IdentityFile {_quoted(key_path())}",
            "  IdentitiesOnly yes",
            f"  HostKeyAlias {alias}",
            f"  UserKnownHostsFile {_quoted(known_hosts_path(alias))}",
            "  StrictHostKeyChecking yes",
            "  CheckHostIP no",
            "  ForwardAgent no",
            "  ForwardX11 no"]


def block(workspaces: list[str]) -> list[str]:
    lines = [START, NOTE, f"# Session and keys: {config_dir()} (${CONFIG_DIR_ENV} in each ProxyCommand)."]
    for name in sorted(workspaces):
        lines += ["", *host_entry(name)]
    return [*lines, END]


def with_block(text: str, new_block: list[str]) -> str:
    """The file's text with the marked block replaced (or appended once); nothing else changes."""
    lines = text.splitlines()
    starts, ends = [i for i, s in enumerate(lines) if s == START], [i for i, s in enumerate(lines) if s == END]
    if len(starts) > 1 or len(ends) > 1 or len(starts) != len(ends) or (starts and starts[0] > ends[0]):
        raise OperatorError("The SSH config has a broken or repeated appliance block (the START/END marker lines).",
                            f"Remove the lines from '{START}' to '{END}' by hand, then run 'appliance config-ssh'.")
    if starts:
        lines[starts[0]:ends[0] + 1] = new_block
    else:
        lines += ([""] if lines and lines[-1].strip() else []) + new_block
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    temp.replace(path)


@click.command("config-ssh")
@click.option("--ssh-config-file", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("~/.ssh/config"), show_default=True, help="The OpenSSH config file to update.")
@click.option("--dry-run", is_flag=True, help="Print the change as a unified diff; write nothing.")
@with_client
def config_ssh(ssh_config_file: Path, dry_run: bool, client: ApiClient) -> None:
    """Add your workspaces to your SSH config, so `ssh appliance.WORKSPACE` (scp, rsync, VS Code) works."""
    path = ssh_config_file.expanduser()
    listed = client.call("GET", "/api/v2/workspaces", WorkspaceListResponse).workspaces
    old = path.read_text() if path.exists() else ""
    new = with_block(old, block([w.name for w in listed]))
    if dry_run:
        diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                    fromfile=str(path), tofile=str(path))
        click.echo("".join(diff) or f"No change to {path}.\n", nl=False)
        return
    ensure_client_key()
    if new == old:
        click.echo(f"No change to {path}.")
        return
    _write(path, new)
    example = listed[0].name if listed else "WORKSPACE"
    click.echo(f"Updated {path}: {len(listed)} workspace(s). Try: ssh {HOST_PREFIX}{example}")
