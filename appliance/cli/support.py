"""`appliance support-bundle`: a redacted zip of what the API shows about this appliance, for the vendor.

Deployment-wide parts (health, releases, relay, registry) need an owner or auditor; a part the
server refuses or lacks is recorded as "unavailable: <error>" and the rest is still collected.
The format (manifest, redaction, atomic write) is bundles.support's (docs/adr/0044-support-bundle.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli.client import ApiClient, with_client
from appliance.errors import OperatorError
from bundles.support import SupportBundle, default_name, require_terminal_or_yes, write_confirmed

# (file in the zip, API path): the deployment as the API shows it.
DEPLOYMENT = (
    ("buildinfo.json", "/api/v2/buildinfo"),
    ("health.json", "/api/v2/debug/health"),
    ("releases.json", "/api/v2/releases"),
    ("maintenance.json", "/api/v2/maintenance"),
    ("pki-status.json", "/api/v2/pki/status"),
    ("derp-map.json", "/api/v2/derp-map"),
    ("relay.json", "/api/v2/relay"),
    ("registry-images.json", "/api/v2/images"),
    ("me.json", "/api/v2/users/me"),
)
MAX_LOG_PAGES = 100  # 1000 lines a page: a build's or an agent's last 100k lines are plenty


@click.command("support-bundle")
@with_client
@click.option("--workspace", "-w", default=None, metavar="WS",
              help="Also collect this workspace's builds with their logs and its agents' logs (id or name).")
@click.option("--output-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the zip [default: ./support-bundle-appliance-<time>.zip].")
@click.option("--yes", is_flag=True, help="Write without asking after showing what was collected.")
def support_bundle(client: ApiClient, workspace: str | None, output_file: Path | None, yes: bool) -> None:
    """Collect a redacted support bundle (health, versions, releases, relay, registry, a workspace's logs)."""
    require_terminal_or_yes(yes)
    write_confirmed(collect(client, workspace), output_file or Path(default_name("appliance")), yes=yes)


def collect(client: ApiClient, workspace: str | None) -> SupportBundle:
    """Everything the API shows that the bundle holds; the caller's own token is a known secret."""
    bundle = SupportBundle("appliance", secrets=[client.token] if client.token else [])
    for name, path in DEPLOYMENT:
        _add(bundle, client, name, path)
    if workspace:
        _collect_workspace(bundle, client, workspace)
    return bundle


def _add(bundle: SupportBundle, client: ApiClient, name: str, path: str) -> Any:
    try:
        answer = client.request("GET", path)
    except OperatorError as err:
        bundle.unavailable(name, err.message.replace("\n", " "))
        return None
    bundle.add_json(name, answer)
    return answer


def _collect_workspace(bundle: SupportBundle, client: ApiClient, workspace: str) -> None:
    found = _add(bundle, client, "workspace/workspace.json", f"/api/v2/workspaces/{workspace}")
    if found is None:
        return
    builds = _add(bundle, client, "workspace/builds.json", f"/api/v2/workspaces/{found['id']}/builds") or {}
    agents: dict[str, str] = {}
    for build in builds.get("builds", []):
        _add_log(bundle, client, f"workspace/build-{build['build_number']}.log",
                 f"/api/v2/workspacebuilds/{build['id']}/logs")
        agents |= {agent["id"]: agent["name"] for resource in build.get("resources", [])
                   for agent in resource.get("agents", [])}
    for agent_id, name in sorted(agents.items()):
        stem = f"workspace/agent-{name}-{agent_id[:8]}"
        _add(bundle, client, f"{stem}.json", f"/api/v2/workspaceagents/{agent_id}")
        _add_log(bundle, client, f"{stem}.log", f"/api/v2/workspaceagents/{agent_id}/logs")


def _add_log(bundle: SupportBundle, client: ApiClient, name: str, path: str) -> None:
    """A job's or an agent's log lines as text: time, [stage], output."""
    try:
        lines = _paged(client, path)
    except OperatorError as err:
        bundle.unavailable(name, err.message.replace("\n", " "))
        return
    bundle.add_text(name, "".join(f"{line['created_at']} " + (f"[{line['stage']}] " if line.get("stage") else "")
                                  + f"{line['output']}\n" for line in lines))


def _paged(client: ApiClient, path: str) -> list[dict[str, Any]]:
    """Every log line of `path`, a page (1000 lines) at a time, after the last id seen."""
    lines: list[dict[str, Any]] = []
    for _ in range(MAX_LOG_PAGES):
        page = client.request("GET", path, params={"after": lines[-1]["id"] if lines else 0})["logs"]
        if not page:
            break
        lines += page
    return lines
