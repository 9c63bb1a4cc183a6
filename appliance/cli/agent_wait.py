"""Waiting for a workspace's agent to connect before a command reaches it (`appliance ssh`, `port-forward`).

As Coder's CLI: while the workspace is starting or its agent is connecting, wait with a spinner on a
terminal (one line otherwise); a timed-out or disconnected agent is waited for too, with the
troubleshooting hint shown once, since it may still come. `--wait no` fails at once instead.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import click

from appliance.cli.builds import resolve_workspace
from appliance.cli.client import ApiClient
from appliance.errors import OperatorError
from appliance.relay.dial import agent_of
from appliance.sdk.agents import WorkspaceAgentResponse
from appliance.sdk.workspaces import WorkspaceResponse

Wait = Literal["yes", "no"]
POLL_SECONDS = 1.0
_BUILDING = ("pending", "starting")
_FRAMES = "|/-\\"


def wait_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """--wait yes|no, handed to the command as `wait`."""
    return click.option("--wait", "wait", type=click.Choice(["yes", "no"]), default="yes", show_default=True,
                        help="Wait for the workspace's agent to connect; no: fail at once when it is not "
                             "connected.")(func)


def connected_agent(client: ApiClient, ref: str, agent_name: str = "", *,
                    wait: Wait = "yes") -> tuple[WorkspaceResponse, str]:
    """The workspace and its agent's id once that agent is connected (waiting unless wait is "no")."""
    spinner = _Spinner()
    hinted = False
    try:
        while True:
            workspace = resolve_workspace(client, ref)
            waiting_for, agent_id = _not_connected(client, workspace, agent_name)
            if not waiting_for:
                return workspace, agent_id
            if wait == "no":
                raise OperatorError(f"{waiting_for}.", f"Run the command again without '--wait no' to wait for "
                                    f"it, or see 'appliance show {workspace.name}'.")
            if agent_id and not hinted and (hint := _hint(client, agent_id)):
                spinner.note(hint)
                hinted = True
            for _ in range(len(_FRAMES)):
                spinner.show(waiting_for)
                time.sleep(POLL_SECONDS / len(_FRAMES))
    finally:
        spinner.clear()


def _not_connected(client: ApiClient, workspace: WorkspaceResponse, agent_name: str) -> tuple[str, str]:
    """What we are waiting for (empty when the agent is connected) and the agent's id once there is one."""
    if workspace.latest_build.transition == "start" and workspace.status in _BUILDING:
        return f"Workspace {workspace.name} is {workspace.status}", ""
    agent_id = agent_of(workspace, agent_name)  # a stopped or failed workspace: its error, no waiting
    agents = [a for r in workspace.latest_build.resources for a in r.agents if a.id == agent_id]
    if agents[0].status == "connected":
        return "", agent_id
    return f"The agent of workspace {workspace.name} is {agents[0].status}, not connected yet", agent_id


def _hint(client: ApiClient, agent_id: str) -> str:
    return client.call("GET", f"/api/v2/workspaceagents/{agent_id}", WorkspaceAgentResponse).troubleshooting_hint


class _Spinner:
    """A spinning line on a terminal's stderr; a plain line per new message elsewhere (logs, pipes)."""

    def __init__(self) -> None:
        self.is_tty = sys.stderr.isatty()
        self.frames = itertools.cycle(_FRAMES)
        self.last = ""

    def show(self, message: str) -> None:
        if self.is_tty:
            click.echo(f"\r{next(self.frames)} {message}...\033[K", err=True, nl=False)
        elif message != self.last:
            click.echo(f"{message}; waiting...", err=True)
        self.last = message

    def note(self, text: str) -> None:
        self.clear()
        click.echo(text, err=True)

    def clear(self) -> None:
        if self.is_tty and self.last:
            click.echo("\r\033[K", err=True, nl=False)
