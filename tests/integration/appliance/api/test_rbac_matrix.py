"""Every API route against every role, over real HTTP: the RBAC table as users meet it.

ROUTES is the expected table, one row per (method, path, scenario). A route in the live OpenAPI
document without a row fails test_every_documented_route_has_a_row, so a new endpoint cannot
ship without someone deciding who may call it. An allowed role must not meet 401, 403 or 404;
a refused one gets 403, or 404 where the API hides objects the caller may not read;
anonymous callers get 401 on every authenticated route.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import requests

from appliance.provisioner.local import start_in_process
from appliance.releases import record_release
from appliance.sdk.releases import ReleaseRecord
from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.postgres import create_database, drop_database
from tests.support.server import LiveServer, live_server
from tests.support.workspaces import MINIMAL, push, wait_build, wait_version

ANONYMOUS = "anonymous"
ROLES = ["owner", "user-admin", "template-admin", "auditor", "member"]
CALLERS = [*ROLES, ANONYMOUS]

EVERYONE = frozenset(ROLES)
PUBLIC = frozenset(CALLERS)
NOBODY: frozenset[str] = frozenset()
READERS = frozenset({"owner", "user-admin", "template-admin", "auditor"})  # see every user
USER_ADMINS = frozenset({"owner", "user-admin"})
TEMPLATE_ADMINS = frozenset({"owner", "template-admin"})
WORKSPACE_READERS = TEMPLATE_ADMINS  # everyone's workspaces, builds and state
AUDITORS = frozenset({"owner", "auditor"})
OWNERS = frozenset({"owner"})

PSK = "rbac-matrix-provisioner-key"


@dataclass
class Cast:
    """The module's fixed world: one template, one built workspace of a plain member, one caller per role."""

    owner: Api
    callers: dict[str, tuple[dict[str, Any], Api]]
    template: str
    version_id: str
    workspace_id: str      # owned by a plain member who is none of the callers
    build_id: str          # its first build, finished, with state
    own_workspaces: dict[str, tuple[str, str]]  # role -> (workspace id, build id) owned by that caller
    release_id: str        # an install the installer recorded


class World:
    """What one call needs, made on first use: fresh targets, so no case depends on another."""

    def __init__(self, cast: Cast, role: str) -> None:
        self.cast, self.role, self.owner = cast, role, cast.owner
        self.caller, logged_in = cast.callers[role]
        self.api = Api(logged_in.base, logged_in.token)  # no cookie from an earlier case's login

    def _user(self, roles: list[str] | None = None) -> dict[str, Any]:
        return self.owner.create_user(roles=roles)

    @cached_property
    def member(self) -> dict[str, Any]:
        return self._user()

    @cached_property
    def privileged(self) -> dict[str, Any]:
        """An account holding a site role: only owners change it (finding 9)."""
        return self._user(["template-admin"])

    def suspended(self, user: dict[str, Any]) -> str:
        assert self.owner.put(f"/api/v2/users/{user['id']}/status/suspend").status_code == 200
        return str(user["id"])

    def token_of(self, user_id: str, api: Api) -> str:
        made = api.post(f"/api/v2/users/{user_id}/keys/tokens", json={"token_name": f"t{uuid.uuid4().hex[:8]}"})
        assert made.status_code == 201, made.text
        return str(made.json()["token"]["id"])

    @cached_property
    def own_token(self) -> str:
        return self.token_of("me", self.api) if self.role != ANONYMOUS else "k" + uuid.uuid4().hex[:9]

    @cached_property
    def metrics_token(self) -> str | None:
        """A token of scope 'metrics' of the caller's own: what a Prometheus server would hold."""
        if self.role == ANONYMOUS:
            return None
        made = self.api.post("/api/v2/users/me/keys/tokens",
                             json={"token_name": f"m{uuid.uuid4().hex[:8]}", "scope": "metrics"})
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    @cached_property
    def fresh_template(self) -> str:
        name = f"t{uuid.uuid4().hex[:8]}"
        assert self.owner.post("/api/v2/templates", json={"name": name}).status_code == 201
        return name

    @cached_property
    def file_hash(self) -> str:
        return str(self.owner.post("/api/v2/files", data=_tar(), headers=_TAR).json()["hash"])

    @cached_property
    def fresh_session(self) -> str | None:
        return self.api.login(self.caller["username"]) if self.role != ANONYMOUS else None

    @cached_property
    def client_ssh_key(self) -> str:
        return str(asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().strip())

    @property
    def own_workspace(self) -> str:
        return self.cast.own_workspaces.get(self.role, (self.cast.workspace_id, ""))[0]

    @property
    def own_build(self) -> str:
        return self.cast.own_workspaces.get(self.role, ("", self.cast.build_id))[1]


Params = Callable[[World], dict[str, str]]
Send = Callable[[World], dict[str, Any]]
Shows = Callable[[requests.Response, World], bool]


def _none(_: World) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Route:
    method: str
    path: str                      # exactly as in the OpenAPI document
    scenario: str                  # what the caller tries, for the test id
    allowed: frozenset[str]
    params: Params = _none         # path parameters
    send: Send = _none             # requests keyword arguments: json, data, headers, params, token
    shows: Shows | None = None     # when set, "allowed" means the 200 answer shows the object
    daemons_only: bool = False     # a daemon's key or an agent's token, never a user's session, opens it
    finding: int | None = None


_TAR = {"Content-Type": "application/x-tar"}


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = f"# {uuid.uuid4()}\nterraform {{}}\n".encode()
        info = tarfile.TarInfo("main.tf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _new_user(w: World) -> dict[str, Any]:
    name = f"n{uuid.uuid4().hex[:10]}"
    return {"json": {"username": name, "email": f"{name}@example.org", "password": DEFAULT_PASSWORD}}


def _job(_: World) -> dict[str, str]:
    return {"job": str(uuid.uuid4())}


def _daemon(**send: Any) -> Send:
    return lambda w: {"headers": {"Appliance-Provisioner-Daemon": str(uuid.uuid4())}, **send}


def _user(pick: Callable[[World], str]) -> Params:
    return lambda w: {"user": pick(w)}


def _template(w: World) -> dict[str, str]:
    return {"template": w.cast.template}


def _version(w: World) -> dict[str, str]:
    return {"template": w.cast.template, "version": w.cast.version_id}


def _workspace(w: World) -> dict[str, str]:
    return {"workspace": w.cast.workspace_id}


def _build(w: World) -> dict[str, str]:
    return {"build": w.cast.build_id}


def _agent(w: World) -> dict[str, str]:
    build = w.owner.get(f"/api/v2/workspacebuilds/{w.cast.build_id}").json()
    return {"agent": next(a["id"] for r in build["resources"] for a in r["agents"])}


def _listed(key: str, wanted: Callable[[World], str]) -> Shows:
    return lambda response, w: wanted(w) in {item["id"] for item in response.json()[key]}


U = "/api/v2/users"
P = "/api/v2/provisionerd"
T = "/api/v2/templates/{template}"
V = T + "/versions/{version}"
W = "/api/v2/workspaces/{workspace}"
B = "/api/v2/workspacebuilds/{build}"
A = "/api/v2/workspaceagents/{agent}"
A_ME = "/api/v2/workspaceagents/me"
LOGIN = {"json": {"username": "logs-in", "password": DEFAULT_PASSWORD}}
SAME_PASSWORD = {"json": {"old_password": DEFAULT_PASSWORD, "password": DEFAULT_PASSWORD}}

ROUTES: list[Route] = [
    # Public: anyone, logged in or not.
    Route("GET", "/healthz", "check health", PUBLIC),
    Route("GET", "/api/v2/buildinfo", "read the build info", PUBLIC),
    Route("GET", "/api/v2/openapi.json", "read the API document", PUBLIC),
    Route("GET", U + "/first", "ask whether the first user exists", PUBLIC),
    Route("POST", U + "/first", "try to create the first user again (409)", PUBLIC, send=_new_user),
    Route("POST", U + "/login", "log in", PUBLIC, send=lambda w: LOGIN),
    Route("GET", "/api/v2/pki/ca.pem", "fetch the CA bundle", PUBLIC),
    Route("GET", "/api/v2/pki/crl.pem", "fetch the CRL", PUBLIC),
    # Provisioner daemons: the pre-shared key, never a user's session.
    Route("POST", P + "/acquire", "acquire a job as a daemon", NOBODY, daemons_only=True,
          send=lambda w: {"json": {"daemon_id": str(uuid.uuid4()), "name": "rogue"}}),
    Route("POST", P + "/jobs/{job}/heartbeat", "heartbeat a job", NOBODY, _job, _daemon(), daemons_only=True),
    Route("POST", P + "/jobs/{job}/logs", "append job logs", NOBODY, _job,
          _daemon(json={"logs": [["Planning", "info", "x"]]}), daemons_only=True),
    Route("PUT", P + "/jobs/{job}/state", "upload a job's state", NOBODY, _job, _daemon(data=b"{}"),
          daemons_only=True),
    Route("POST", P + "/jobs/{job}/import-complete", "complete an import", NOBODY, _job,
          _daemon(json={"plan": {}}), daemons_only=True),
    Route("POST", P + "/jobs/{job}/build-complete", "complete a build", NOBODY, _job, _daemon(data=b"{}"),
          daemons_only=True),
    Route("POST", P + "/jobs/{job}/fail", "fail a job", NOBODY, _job, _daemon(json={"error": "x"}),
          daemons_only=True),
    # Users.
    Route("POST", U + "/logout", "log out", EVERYONE, send=lambda w: {"token": w.fresh_session}),
    Route("GET", U, "list users", EVERYONE),
    Route("GET", U, "see other users in the list", READERS, send=lambda w: {"params": {"q": w.member["username"]}},
          shows=_listed("users", lambda w: w.member["id"])),
    Route("POST", U, "create a user", USER_ADMINS, send=_new_user),
    Route("GET", U + "/{user}", "read oneself", EVERYONE, _user(lambda w: "me")),
    Route("GET", U + "/{user}", "read another user", READERS, _user(lambda w: w.member["id"])),
    Route("PUT", U + "/{user}/status/suspend", "suspend a member", USER_ADMINS, _user(lambda w: w.member["id"])),
    Route("PUT", U + "/{user}/status/suspend", "suspend a template admin", OWNERS,
          _user(lambda w: w.privileged["id"]), finding=9),
    Route("PUT", U + "/{user}/status/activate", "activate a member", USER_ADMINS,
          _user(lambda w: w.suspended(w.member))),
    Route("PUT", U + "/{user}/status/activate", "activate a template admin", OWNERS,
          _user(lambda w: w.suspended(w.privileged)), finding=9),
    Route("PUT", U + "/{user}/roles", "give a member a role", OWNERS, _user(lambda w: w.member["id"]),
          lambda w: {"json": {"roles": ["auditor"]}}),
    Route("PUT", U + "/{user}/password", "change their own password", EVERYONE, _user(lambda w: "me"),
          lambda w: SAME_PASSWORD),
    Route("PUT", U + "/{user}/password", "reset a member's password", USER_ADMINS,
          _user(lambda w: w.member["id"]), lambda w: {"json": {"password": "reset-by-an-admin"}}),
    Route("PUT", U + "/{user}/password", "reset a template admin's password", OWNERS,
          _user(lambda w: w.privileged["id"]), lambda w: {"json": {"password": "reset-by-an-admin"}}, finding=9),
    Route("DELETE", U + "/{user}", "delete a member", USER_ADMINS, _user(lambda w: w.member["id"])),
    Route("DELETE", U + "/{user}", "delete a template admin", OWNERS, _user(lambda w: w.privileged["id"]),
          finding=9),
    # The workspace owner's SSH key (Coder's gitsshkey): its holder, and those who manage the account.
    Route("GET", U + "/{user}/gitsshkey", "read their own SSH key", EVERYONE, _user(lambda w: "me")),
    Route("GET", U + "/{user}/gitsshkey", "read a member's SSH key", USER_ADMINS, _user(lambda w: w.member["id"])),
    Route("PUT", U + "/{user}/gitsshkey", "regenerate their own SSH key", EVERYONE, _user(lambda w: "me")),
    Route("PUT", U + "/{user}/gitsshkey", "regenerate a member's SSH key", USER_ADMINS,
          _user(lambda w: w.member["id"])),
    # Tokens.
    Route("POST", U + "/{user}/keys/tokens", "create their own token", EVERYONE, _user(lambda w: "me"),
          lambda w: {"json": {"token_name": f"t{uuid.uuid4().hex[:8]}"}}),
    Route("POST", U + "/{user}/keys/tokens", "create a token for a member", OWNERS,
          _user(lambda w: w.member["id"]), lambda w: {"json": {"token_name": "mine-now"}}),
    Route("POST", U + "/{user}/keys/tokens", "create a token for a template admin", OWNERS,
          _user(lambda w: w.privileged["id"]), lambda w: {"json": {"token_name": "mine-now"}}, finding=9),
    Route("GET", U + "/{user}/keys/tokens", "list their own tokens", EVERYONE, _user(lambda w: "me")),
    Route("GET", U + "/{user}/keys/tokens", "list a member's tokens", OWNERS, _user(lambda w: w.member["id"])),
    Route("DELETE", U + "/{user}/keys/{key_id}", "revoke their own token", EVERYONE,
          lambda w: {"user": "me", "key_id": w.own_token}),
    Route("DELETE", U + "/{user}/keys/{key_id}", "revoke a member's token", OWNERS,
          lambda w: {"user": w.member["id"], "key_id": w.token_of(w.member["id"], w.owner)}),
    # Audit and PKI.
    Route("GET", "/api/v2/audit", "search the audit log", AUDITORS),
    Route("GET", "/api/v2/audit/export", "export the audit log", AUDITORS),
    Route("GET", "/api/v2/pki/status", "read the CA status", OWNERS),
    # Everyone gets a token; what it grants is scopes.grant's to decide (tests/.../registry/test_token.py).
    Route("GET", "/api/v2/registry/token", "get a registry token", EVERYONE,
          send=lambda w: {"params": {"service": "appliance-registry", "scope": "repository:team/app:pull"}}),
    # Those who may push see what the registry holds (here it is unreachable: a 200 that says so).
    Route("GET", "/api/v2/images", "list the registry's images", TEMPLATE_ADMINS),
    # Templates: everyone reads them; template admins change them.
    Route("POST", "/api/v2/files", "upload a template source", TEMPLATE_ADMINS,
          send=lambda w: {"data": _tar(), "headers": _TAR}),
    Route("POST", "/api/v2/templates", "create a template", TEMPLATE_ADMINS,
          send=lambda w: {"json": {"name": f"t{uuid.uuid4().hex[:8]}"}}),
    Route("GET", "/api/v2/templates", "list templates", EVERYONE),
    Route("GET", T, "read a template", EVERYONE, _template),
    Route("PATCH", T, "change a template", TEMPLATE_ADMINS, _template,
          lambda w: {"json": {"description": f"changed by {w.role}"}}),
    Route("DELETE", T, "delete a template", TEMPLATE_ADMINS, lambda w: {"template": w.fresh_template}),
    Route("POST", T + "/versions", "push a version", TEMPLATE_ADMINS, _template,
          lambda w: {"json": {"file_hash": w.file_hash, "activate": False}}),
    Route("GET", T + "/versions", "list versions", EVERYONE, _template),
    Route("GET", V, "read a version", EVERYONE, _version),
    Route("POST", V + "/promote", "promote a version", TEMPLATE_ADMINS, _version),
    Route("POST", V + "/archive", "archive a version (409: it is active)", TEMPLATE_ADMINS, _version),
    Route("POST", V + "/unarchive", "unarchive a version", TEMPLATE_ADMINS, _version),
    # Import logs and plan output: template admins and owners only.
    Route("GET", "/api/v2/templateversions/{version_id}/logs", "read a version's import logs", TEMPLATE_ADMINS,
          lambda w: {"version_id": w.cast.version_id}, finding=1),
    Route("GET", "/api/v2/templateversions/{version_id}/logs", "follow a version's import logs", TEMPLATE_ADMINS,
          lambda w: {"version_id": w.cast.version_id}, lambda w: {"params": {"follow": "true"}}, finding=1),
    # Workspaces: one's own, and a plain member's (which only owners change and template admins read).
    Route("POST", "/api/v2/workspaces", "create their own workspace", EVERYONE,
          send=lambda w: {"json": {"template": w.cast.template, "name": f"w{uuid.uuid4().hex[:8]}"}}),
    Route("POST", "/api/v2/workspaces", "create a workspace for a member", OWNERS,
          send=lambda w: {"json": {"template": w.cast.template, "name": f"w{uuid.uuid4().hex[:8]}",
                                   "owner": w.member["username"]}}),
    Route("GET", "/api/v2/workspaces", "list their own workspaces", EVERYONE),
    Route("GET", "/api/v2/workspaces", "see a member's workspace in the list", WORKSPACE_READERS,
          send=lambda w: {"params": {"owner": "all"}}, shows=_listed("workspaces", lambda w: w.cast.workspace_id)),
    Route("GET", W, "read their own workspace", EVERYONE, lambda w: {"workspace": w.own_workspace}),
    Route("GET", W, "read a member's workspace", WORKSPACE_READERS, _workspace),
    Route("POST", W + "/builds", "stop a member's workspace", OWNERS, _workspace,
          lambda w: {"json": {"transition": "stop"}}),
    Route("POST", W + "/update", "update a member's workspace", OWNERS, _workspace, lambda w: {"json": {}}),
    Route("GET", W + "/builds", "list a member's builds", WORKSPACE_READERS, _workspace),
    Route("GET", W + "/connections", "list who connected to a member's workspace", WORKSPACE_READERS, _workspace),
    Route("GET", B, "read a member's build", WORKSPACE_READERS, _build),
    Route("POST", B + "/cancel", "cancel a member's build (409: finished)", OWNERS, _build),
    Route("GET", B + "/state", "read a member's build state (it holds agent tokens)", TEMPLATE_ADMINS, _build),
    # Build logs: the workspace's owner and admins.
    Route("GET", B + "/logs", "read their own build's logs", EVERYONE, lambda w: {"build": w.own_build}),
    Route("GET", B + "/logs", "read a member's build logs", WORKSPACE_READERS, _build),
    Route("GET", B + "/logs", "follow a member's finished build logs", WORKSPACE_READERS, _build,
          lambda w: {"params": {"follow": "true"}}),
    # Workspace agents: their own routes take the agent's token, never a user's session.
    Route("GET", A_ME + "/manifest", "read an agent's manifest", NOBODY, daemons_only=True),
    Route("POST", A_ME + "/relay", "register an agent's relay key", NOBODY, daemons_only=True,
          send=lambda w: {"json": {"node_key": "ab" * 32, "ssh_host_key": "ssh-ed25519 AAAA"}}),
    Route("POST", A_ME + "/report-lifecycle", "report an agent's lifecycle", NOBODY, daemons_only=True,
          send=lambda w: {"json": {"state": "ready", "changed_at": "2026-01-01T00:00:00+00:00"}}),
    Route("PATCH", A_ME + "/logs", "append an agent's startup log", NOBODY, daemons_only=True,
          send=lambda w: {"json": {"logs": []}}),
    Route("POST", A_ME + "/metadata", "report an agent's metadata", NOBODY, daemons_only=True,
          send=lambda w: {"json": {"results": []}}),
    Route("POST", A_ME + "/listening-ports", "report an agent's listening ports", NOBODY, daemons_only=True,
          send=lambda w: {"json": {"ports": []}}),
    Route("POST", A_ME + "/app-health", "report an agent's app health", NOBODY, daemons_only=True,
          send=lambda w: {"json": {"healths": {}}}),
    # A member's agent: readers see it; only owners connect (409 here: the agent never connected).
    Route("GET", A, "read a member's agent", WORKSPACE_READERS, _agent),
    Route("GET", A + "/logs", "read a member's agent's startup log", WORKSPACE_READERS, _agent),
    Route("GET", A + "/listening-ports", "read a member's agent's listening ports", WORKSPACE_READERS, _agent),
    Route("POST", A + "/pair", "pair with a member's agent", OWNERS, _agent,
          lambda w: {"json": {"node_key": "cd" * 32, "ssh_public_key": w.client_ssh_key}}),
    Route("GET", "/api/v2/derp-map", "read the DERP map", EVERYONE),
    Route("GET", "/api/v2/relay", "read the relay's counters", OWNERS),
    # Maintenance and the release history the installer records: owners and auditors read the receipts.
    Route("GET", "/api/v2/maintenance", "ask whether maintenance refuses changes", EVERYONE),
    Route("GET", "/api/v2/releases", "list the release history", AUDITORS),
    Route("GET", "/api/v2/releases/{release}", "read a release's receipt", AUDITORS,
          lambda w: {"release": w.cast.release_id}),
    # The health report: owners and auditors read it and its dismissals; owners dismiss.
    Route("GET", "/api/v2/debug/health", "read the health report", AUDITORS),
    Route("GET", "/api/v2/debug/health/settings", "read the dismissed health codes", AUDITORS),
    Route("PUT", "/api/v2/debug/health/settings", "dismiss health codes", OWNERS,
          send=lambda w: {"json": {"dismissed_codes": []}}),
    # Metrics: only a token of scope 'metrics' scrapes (a session is refused), and only an owner's or auditor's.
    Route("GET", "/api/v2/metrics", "scrape metrics with a session", NOBODY),
    Route("GET", "/api/v2/metrics", "scrape metrics with their own metrics token", AUDITORS,
          send=lambda w: {"token": w.metrics_token}),
]


def _case(route: Route, role: str) -> Any:
    allowed = role in route.allowed
    marks: list[Any] = []
    if route.finding is not None:
        marks.append(pytest.mark.security(finding=route.finding))
    return pytest.param(route, role, marks=marks,
                        id=f"{role} {'may' if allowed else 'may not'} {route.scenario} ({route.method} {route.path})")


CASES = [_case(route, role) for route in ROUTES for role in CALLERS]


@pytest.fixture(scope="module")
def matrix_server(admin_conninfo: str, template_db: str, appliance_mirror: Path,
                  tmp_path_factory: pytest.TempPathFactory, site_pki: Path) -> Iterator[LiveServer]:
    """A server of its own, able to import and build, with no daemon until the cast asks for one."""
    conninfo = create_database(admin_conninfo, "rbac_matrix", template=template_db)
    with live_server(conninfo, mirror_dir=appliance_mirror, provisioner_dir=tmp_path_factory.mktemp("provisioner"),
                     provisioner_psk=PSK, provisioner_heartbeat_timeout=timedelta(seconds=8),
                     pki_dir=site_pki) as live:
        yield live
    drop_database(admin_conninfo, "rbac_matrix")


@pytest.fixture(scope="module")
def cast(matrix_server: LiveServer) -> Cast:
    """One template imported and one workspace built by real terraform; then the daemon stops, so every
    build the table queues stays queued. Password hashing and terraform dominate this table's cost."""
    api = Api(matrix_server.url)
    api.create_first_user("owner")
    owner = api.as_user(api.login("owner"))
    owner.create_user(username="logs-in")
    holder = owner.create_user(username="ws-holder")
    daemon = start_in_process(matrix_server.config, matrix_server.db, count=1)
    try:
        version = wait_version(owner, "base", push(owner, MINIMAL, "base")["id"])
        assert version["job"]["status"] == "succeeded", version["job"]["error"]
        created = owner.post("/api/v2/workspaces", json={"template": "base", "name": "shared",
                                                         "owner": holder["username"]})
        assert created.status_code == 201, created.text
        build = wait_build(owner, created.json()["latest_build"]["id"])
        assert build["status"] == "running", build
    finally:
        daemon.stop()
    callers: dict[str, tuple[dict[str, Any], Api]] = {ANONYMOUS: ({"username": ""}, Api(matrix_server.url))}
    own: dict[str, tuple[str, str]] = {}
    for role in ROLES:
        user = owner.create_user(roles=[] if role == "member" else [role], username=f"as-{role}")
        callers[role] = (user, owner.as_user(owner.login(user["username"])))
        mine = owner.post("/api/v2/workspaces", json={"template": "base", "name": "mine", "owner": user["username"]})
        assert mine.status_code == 201, mine.text
        own[role] = (mine.json()["id"], mine.json()["latest_build"]["id"])
    with matrix_server.db.transaction() as conn:
        release_id, _ = record_release(conn, ReleaseRecord(
            kind="install", to_version="1.0.0", outcome="succeeded", actor="root",
            started_at=datetime(2026, 1, 1, tzinfo=UTC), finished_at=datetime(2026, 1, 1, 0, 5, tzinfo=UTC)))
    return Cast(owner, callers, "base", version["id"], created.json()["id"], build["id"], own, release_id)


def test_every_documented_route_has_a_row(matrix_server: LiveServer) -> None:
    doc = Api(matrix_server.url).get("/api/v2/openapi.json").json()
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    tabled = {(route.method, route.path) for route in ROUTES}
    assert not documented - tabled, f"add a row to ROUTES saying who may call: {sorted(documented - tabled)}"
    assert not tabled - documented, f"rows for routes that no longer exist: {sorted(tabled - documented)}"


@pytest.mark.parametrize(("route", "role"), CASES)
def test_role_against_route(cast: Cast, route: Route, role: str) -> None:
    world = World(cast, role)
    send = route.send(world)
    path = route.path.format(**route.params(world))
    response = world.api.request(route.method, path, **send)
    assert response.status_code < 500, response.text
    if route.shows is not None and response.status_code == 200:
        shown = route.shows(response, world)
        assert shown is (role in route.allowed), f"{role} {'misses' if not shown else 'sees'}: {response.text}"
    elif role in route.allowed:
        assert response.status_code not in (401, 403, 404), f"{role} refused: {response.text}"
    elif role == ANONYMOUS or route.daemons_only:
        assert response.status_code == 401, f"{role} let in: {response.status_code} {response.text}"
    else:
        assert response.status_code in (403, 404), f"{role} allowed: {response.status_code} {response.text}"


@pytest.mark.security(finding=9)
def test_a_user_admin_cannot_take_over_a_template_admin_but_still_manages_members(owner_api: Api) -> None:
    owner_api.create_user(roles=["user-admin"], username="uad")
    victim = owner_api.create_user(roles=["template-admin"], username="tad")
    uad = owner_api.as_user(owner_api.login("uad"))
    of_victim = f"/api/v2/users/{victim['id']}"

    assert uad.put(of_victim + "/password", json={"password": "taken-over-now"}).status_code == 403
    assert owner_api.post("/api/v2/users/login", json={"username": "tad", "password": "taken-over-now"}) \
        .status_code == 401, "the reset must not have happened"
    assert uad.post(of_victim + "/keys/tokens", json={"token_name": "stolen"}).status_code == 403
    assert uad.put(of_victim + "/status/suspend").status_code == 403
    assert uad.delete(of_victim).status_code == 403
    assert uad.put(of_victim + "/roles", json={"roles": []}).status_code == 403
    tad = owner_api.as_user(owner_api.login("tad"))
    assert tad.get("/api/v2/users/me").json()["status"] == "active"

    member = owner_api.create_user(username="mem")
    assert uad.put(f"/api/v2/users/{member['id']}/password", json={"password": "reset-by-an-admin"}).status_code == 200
    assert owner_api.login("mem", "reset-by-an-admin")
    assert uad.put(f"/api/v2/users/{member['id']}/status/suspend").status_code == 200
    assert uad.put("/api/v2/users/me/password", json={"old_password": DEFAULT_PASSWORD,
                                                     "password": "my-own-new-passphrase"}).status_code == 200
