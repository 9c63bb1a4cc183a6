"""`appliance builds logs|list`, and following build and import logs live (server-sent events, or polling)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import click
import requests

from appliance.cli.client import ApiClient, with_client
from appliance.cli.output import Column, emit, output_option, when
from appliance.errors import OperatorError
from appliance.sdk.client import api_error
from appliance.sdk.jobs import LogListResponse, LogResponse
from appliance.sdk.workspaces import BuildListResponse, BuildResponse, WorkspaceListResponse, WorkspaceResponse

FINAL_JOB_STATUSES = frozenset({"succeeded", "failed", "canceled"})
POLL_SECONDS = 1.0
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)


@dataclass(frozen=True)
class LogSource:
    """Where a job's logs are, how to ask whether the job ended, and how a user follows it again."""

    logs_path: str                     # e.g. /api/v2/workspacebuilds/<id>/logs
    job_status: Callable[[], str]      # the job's status now (pending ... succeeded|failed|canceled)
    resume: str                        # a sentence: how to follow again after Ctrl-C


def parse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events as (event, data); comments (keep-alives) and data-less events are skipped."""
    data: list[str]
    event, data = "message", []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                event = value
            elif key == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def print_log(log: LogResponse) -> None:
    line = f"[{log.stage or 'log'}] {log.output}"
    if log.level == "error":
        click.secho(line, fg="red")
    else:
        click.echo(line)


def follow_logs(client: ApiClient, source: LogSource, after: int = 0) -> str:
    """Print the job's logs until it ends and return its final status; Ctrl-C only stops following."""
    try:
        return _follow(client, source, after)
    except KeyboardInterrupt:
        click.echo(f"\nStopped following the logs; the job goes on. {source.resume}", err=True)
        sys.exit(130)


def print_logs_since(client: ApiClient, logs_path: str, after: int) -> int:
    """Print the stored logs after id `after`; return the last id printed."""
    for log in client.call("GET", logs_path, LogListResponse, params={"after": after}).logs:
        print_log(log)
        after = max(after, log.id)
    return after


def _follow(client: ApiClient, source: LogSource, after: int) -> str:
    while True:
        response = client.send("GET", source.logs_path, params={"after": after, "follow": "true"}, stream=True)
        if response.status_code >= 400:
            raise api_error(response)
        if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
            response.close()
            return _poll(client, source, after)
        with response:
            response.encoding = "utf-8"  # text/* without a charset would otherwise decode as Latin-1
            try:
                for event, data in parse_events(response.iter_lines(decode_unicode=True)):
                    if event == "log":
                        log = LogResponse.model_validate_json(data)
                        print_log(log)
                        after = max(after, log.id)
                    elif event == "end":
                        return str(json.loads(data)["status"])
            except requests.RequestException:  # a quiet stream timed out or the connection dropped: resume
                pass
        status = source.job_status()
        if status in FINAL_JOB_STATUSES:
            print_logs_since(client, source.logs_path, after)
            return status
        time.sleep(POLL_SECONDS)


def _poll(client: ApiClient, source: LogSource, after: int) -> str:
    """For servers (or proxies) that do not stream: ask for new lines every second."""
    while True:
        status = source.job_status()
        after = print_logs_since(client, source.logs_path, after)
        if status in FINAL_JOB_STATUSES:
            return status
        time.sleep(POLL_SECONDS)


def logs_ref(build: BuildResponse, workspace_ref: str) -> str:
    """What to pass to `appliance builds logs`: a deleted workspace's name no longer resolves, its build id does."""
    return build.id if build.transition == "delete" else workspace_ref


def get_build(client: ApiClient, build_id: str) -> BuildResponse:
    return client.call("GET", f"/api/v2/workspacebuilds/{build_id}", BuildResponse)


def build_source(client: ApiClient, build: BuildResponse, workspace_ref: str) -> LogSource:
    return LogSource(
        logs_path=f"/api/v2/workspacebuilds/{build.id}/logs",
        job_status=lambda: get_build(client, build.id).job.status,
        resume=f"Follow it again with 'appliance builds logs {logs_ref(build, workspace_ref)} -f'.")


def follow_build(client: ApiClient, build: BuildResponse, workspace_ref: str) -> None:
    """Follow a build to its end; a build that did not succeed is an error naming its job's error."""
    click.echo(f"Build #{build.build_number} ({build.transition}) of {workspace_ref}:", err=True)
    status = follow_logs(client, build_source(client, build, workspace_ref))
    if status != "succeeded":
        job = get_build(client, build.id).job
        raise OperatorError(f"The {build.transition} build of {workspace_ref} {status}: "
                            f"{job.error or 'no error recorded'}",
                            f"Read its logs with 'appliance builds logs {logs_ref(build, workspace_ref)}'; retry with "
                            f"'appliance {build.transition} {workspace_ref}'.")
    click.echo(f"The {build.transition} build of {workspace_ref} succeeded.", err=True)


def resolve_workspace(client: ApiClient, ref: str) -> WorkspaceResponse:
    """A workspace by id, by a name of the caller's, or (admins) by owner/name."""
    if "/" not in ref:
        return client.call("GET", f"/api/v2/workspaces/{ref}", WorkspaceResponse)
    owner, name = ref.split("/", 1)
    matches = client.call("GET", "/api/v2/workspaces", WorkspaceListResponse,
                          params={"owner": owner, "name": name}).workspaces
    if not matches:
        raise OperatorError(f"No workspace {ref}.", "List workspaces with 'appliance list --all'.")
    return matches[0]


def _build_for(client: ApiClient, ref: str) -> tuple[BuildResponse, str]:
    """The build a BUILD_ID names, or a workspace's latest build; with the workspace ref to show."""
    if UUID.match(ref):
        return get_build(client, ref), ref
    return resolve_workspace(client, ref).latest_build, ref


BUILD_COLUMNS: list[Column] = [
    ("#", lambda b: b.build_number),
    ("Transition", lambda b: b.transition),
    ("Result", lambda b: b.job.status),
    ("Version", lambda b: b.template_version_name),
    ("Initiator", lambda b: b.initiator_name),
    ("Created", lambda b: when(b.created_at, width=16).replace("T", " ")),
    ("Error", lambda b: b.job.error),
    ("ID", lambda b: b.id),
]


@click.group()
def builds() -> None:
    """Read a workspace's builds and their logs."""


@builds.command("logs")
@click.argument("ref", metavar="WORKSPACE|BUILD_ID")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the build ends.")
@with_client
def logs(ref: str, follow: bool, client: ApiClient) -> None:
    """Print the logs of a build, or of a workspace's latest build."""
    build, shown = _build_for(client, ref)
    if not follow:
        print_logs_since(client, f"/api/v2/workspacebuilds/{build.id}/logs", 0)
        return
    status = follow_logs(client, build_source(client, build, shown))
    if status != "succeeded":
        click.echo(f"The build {status}.", err=True)
        sys.exit(1)


@builds.command("list")
@click.argument("workspace")
@with_client
@output_option
def list_builds(workspace: str, client: ApiClient, output: str) -> None:
    """List a workspace's builds, newest first."""
    found = resolve_workspace(client, workspace)
    result = client.call("GET", f"/api/v2/workspaces/{found.id}/builds", BuildListResponse).builds
    emit(result, BUILD_COLUMNS, output)


@builds.command("cancel")
@click.argument("ref", metavar="WORKSPACE|BUILD_ID")
@with_client
def cancel(ref: str, client: ApiClient) -> None:
    """Cancel a pending or running build (terraform is interrupted; the state it wrote is kept)."""
    build, shown = _build_for(client, ref)
    result = client.call("POST", f"/api/v2/workspacebuilds/{build.id}/cancel", BuildResponse)
    click.echo(f"Build #{result.build_number} of {shown} is {result.status}.")
