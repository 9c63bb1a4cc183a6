"""Templates and workspaces in Chromium: a member creates a workspace from the form, watches its build
logs live, stops, starts and deletes it; an admin reads a template's versions and promotes and archives.

The server is one of this module's own (own database) with an in-process provisioner daemon that runs
the real terraform with the real appliance provider from the real mirror.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Dialog, Locator, Page, expect

from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations
from appliance.pki.ca import CertificateAuthority
from appliance.templates.archive import source_archive
from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.appliance_provider import appliance_mirror_tree
from tests.support.postgres import create_database
from tests.support.server import LiveServer, live_server

MINIMAL = Path(__file__).resolve().parents[2] / "examples" / "templates" / "minimal"
PODMAN_DEBIAN = MINIMAL.with_name("podman-debian")
WORKSPACES_DB = "appliance_browser_workspaces"
BUILD_MS = 120_000  # terraform init + apply with the real provider, on a busy CI machine


# -- fixtures: a server with a provisioner and the mirror ---------------------------------------------


@pytest.fixture(scope="module")
def appliance_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real provider in a mirror tree, as tests/integration has it (the zip is cached across sessions)."""
    return appliance_mirror_tree(tmp_path_factory.mktemp("appliance-mirror") / "tree")


@pytest.fixture(scope="module")
def build_server(pg_cluster: EmbeddedPostgres, site_ca: CertificateAuthority, appliance_mirror: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH; these tests run the real terraform CLI", pytrace=False)
    conninfo = create_database(pg_cluster.conninfo("postgres"), WORKSPACES_DB)
    apply_migrations(conninfo)
    work = tmp_path_factory.mktemp("browser-workspaces")
    with live_server(conninfo, pki_dir=site_ca.root, mirror_dir=appliance_mirror, data_dir=work,
                     provisioner_daemons=1, provisioner_dir=work / "provisioner") as live:
        yield live


@pytest.fixture
def base_url(build_server: LiveServer) -> str:
    """Overrides the conftest's: this module's server. Its database is not emptied between tests (the
    provisioner daemon registered at start must stay), so each test uses users and templates of its own."""
    return build_server.url


@pytest.fixture(scope="module")
def owner(build_server: LiveServer) -> Api:
    api = Api(build_server.url)
    api.create_first_user("owner")
    return api.as_user(api.login("owner"))


# -- helpers ---------------------------------------------------------------------------------------------


def log_in(page: Page, login: str) -> None:
    page.goto("/login")
    page.get_by_label("Username or email").fill(login)
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("header .who")).to_have_text(login)


def push_template(api: Api, name: str, message: str = "", source: Path = MINIMAL) -> dict[str, Any]:
    """What `appliance templates push examples/templates/minimal --name NAME` does, then wait for the import."""
    upload = api.post("/api/v2/files", data=source_archive(source), headers={"Content-Type": "application/x-tar"})
    assert upload.status_code == 201, upload.text
    if api.get(f"/api/v2/templates/{name}").status_code == 404:
        created = api.post("/api/v2/templates", json={"name": name})
        assert created.status_code == 201, created.text
    pushed = api.post(f"/api/v2/templates/{name}/versions", json={"file_hash": upload.json()["hash"],
                                                                 "message": message})
    assert pushed.status_code == 201, pushed.text
    deadline = time.monotonic() + BUILD_MS / 1000
    while time.monotonic() < deadline:
        version: dict[str, Any] = api.get(f"/api/v2/templates/{name}/versions/{pushed.json()['id']}").json()
        if version["job"]["status"] not in ("pending", "running"):
            assert version["job"]["status"] == "succeeded", version
            return version
        time.sleep(0.3)
    raise AssertionError(f"the import of {name} did not finish in {BUILD_MS // 1000}s")


def flash(page: Page, category: str) -> Locator:
    return page.locator(f"main .flash.{category}")


def status(page: Page) -> Locator:
    return page.locator("#workspace-status")


def actions(page: Page) -> Locator:
    return page.locator("#workspace-actions button")


# -- 1. a member's workspace, from the form to deleted ------------------------------------------------------


def test_the_create_form_suggests_podman_debian_first_with_its_limits(page: Page, owner: Api) -> None:
    owner.create_user(username="sasha")
    push_template(owner, "plain")  # pushed first, listed after the suggestion anyway
    push_template(owner, "podman-debian", source=PODMAN_DEBIAN)
    log_in(page, "sasha")
    page.goto("/workspaces/new")
    choices = page.get_by_label("Template").locator("option")
    expect(choices.first).to_have_attribute("value", "podman-debian")
    expect(page.get_by_label("Template")).to_have_value("podman-debian")
    expect(page.get_by_label("CPUs")).to_have_value("2")
    expect(page.get_by_label("Memory (MiB)")).to_have_value("2048")


def test_a_member_creates_stops_starts_and_deletes_a_workspace(page: Page, owner: Api) -> None:
    owner.create_user(username="dana")
    push_template(owner, "minimal")
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/logs" in r.url and "follow=true" in r.url else None)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    log_in(page, "dana")
    page.locator("header.top nav").get_by_role("link", name="Workspaces", exact=True).click()
    expect(page.get_by_text("No workspaces yet.")).to_be_visible()
    page.get_by_role("link", name="Create workspace").first.click()
    # Choosing a template makes the form from its active version's parameters.
    page.get_by_label("Template").select_option("minimal")
    page.locator("form[method=get]").get_by_role("button").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("minimal")
    expect(page.get_by_label("Greeting")).to_have_value("hello")
    expect(page.get_by_label("CPUs")).to_have_value("2")

    # The server refuses a value its validation rejects: the form comes back, the error beside the field.
    page.get_by_label("Workspace name").fill("dev")
    page.get_by_label("Greeting").fill("Hello, World!")
    page.get_by_label("CPUs").fill("4")
    page.get_by_role("button", name="Create workspace").click()
    greeting = page.locator(".field[data-parameter='greeting']")
    expect(greeting.locator(".field-error")).to_have_text(
        re.compile(r"^Parameter 'greeting': .*Use 1 to 40 lowercase letters and spaces\.$"))
    expect(page.get_by_label("Greeting")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert")).to_contain_text("The workspace was not created")
    expect(page.get_by_label("Workspace name")).to_have_value("dev")  # what was typed is kept
    expect(page.get_by_label("Greeting")).to_have_value("Hello, World!")
    expect(page.get_by_label("CPUs")).to_have_value("4")
    expect(page.locator(".field[data-parameter='cpus'] .field-error")).to_have_count(0)
    assert owner.get("/api/v2/workspaces?owner=all").json()["workspaces"] == []

    page.get_by_label("Greeting").fill("hello there")
    page.get_by_role("button", name="Create workspace").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("dev")
    expect(flash(page, "success")).to_contain_text("Workspace dev created")

    # The build log streams in (server-sent events) and the page shows the result when it ends.
    expect(status(page)).to_have_text("running", timeout=BUILD_MS)
    expect(page.locator("#build-logs .stage").first).to_be_visible()
    expect(page.locator("#build-logs")).to_contain_text("Apply complete!")
    assert any("/api/v2/workspacebuilds/" in url for url in streams), streams
    expect(page.locator("#build-status")).to_have_text("succeeded")
    expect(actions(page)).to_have_text(["Stop", "Delete"])
    expect(page.locator("tr[data-address='appliance_agent.main[0]'] [data-app='shell']")).to_have_text("Shell")
    expect(page.locator("table.builds tbody tr")).to_have_count(1)
    expect(page.locator("#template-version")).to_have_text("v1")

    # A new template version makes the workspace outdated; Update rebuilds it on that version.
    push_template(owner, "minimal", "second")
    page.reload()
    expect(page.locator(".tag.outdated")).to_be_visible()
    expect(actions(page)).to_have_text(["Stop", "Update", "Delete"])
    page.get_by_role("button", name="Update").click()
    expect(flash(page, "success")).to_contain_text("Updating to v2")
    expect(status(page)).to_have_text("running", timeout=BUILD_MS)
    expect(page.locator("#template-version")).to_have_text("v2")
    expect(page.locator(".tag.outdated")).to_have_count(0)
    expect(actions(page)).to_have_text(["Stop", "Delete"])

    page.get_by_role("button", name="Stop").click()
    expect(flash(page, "success")).to_contain_text("Stopping")
    expect(status(page)).to_have_text("stopped", timeout=BUILD_MS)
    expect(actions(page)).to_have_text(["Start", "Delete"])
    expect(page.locator("tr[data-address='appliance_agent.main[0]']")).to_have_count(0)
    expect(page.locator("tr[data-address='terraform_data.home']")).to_have_count(1)  # the persistent one stays

    page.get_by_role("button", name="Start").click()
    expect(status(page)).to_have_text("running", timeout=BUILD_MS)
    expect(page.locator("table.builds tbody tr")).to_have_count(4)
    expect(page.locator("table.builds tbody tr").first.locator("td").nth(1)).to_have_text("start")

    confirmations: list[str] = []

    def confirm(dialog: Dialog) -> None:
        confirmations.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    page.get_by_role("button", name="Delete").click()
    # When the delete build succeeds, the page moves on to the list, where the workspace is gone.
    expect(page).to_have_url(re.compile(r"/workspaces$"), timeout=BUILD_MS)
    expect(page.get_by_text("No workspaces yet.")).to_be_visible()
    assert confirmations == ["Delete workspace dev? Everything it holds, home volume included, is destroyed."]
    assert errors == []

    # Every step is in the audit log, done by dana.
    audit = owner.get("/api/v2/audit?username=dana&limit=100").json()["audit_logs"]
    seen = {(e["action"], e["resource_type"]) for e in audit}
    assert {("create", "workspace"), ("stop", "workspace_build"), ("start", "workspace_build"),
            ("delete", "workspace_build")} <= seen, seen


# -- 2. a template as its admin sees it ---------------------------------------------------------------------


def test_template_pages_show_versions_parameters_logs_and_let_admins_promote_and_archive(
    page: Page, new_context: Callable[[], BrowserContext], owner: Api, base_url: str
) -> None:
    push_template(owner, "starter", "first")
    push_template(owner, "starter", "second")

    log_in(page, "owner")
    page.locator("header.top nav").get_by_role("link", name="Templates", exact=True).click()
    row = page.locator("table.templates tr[data-template='starter']")
    expect(row.locator("td").nth(1)).to_have_text("v2")
    expect(row.locator("td").nth(2)).to_have_text("0")
    row.get_by_role("link", name="starter").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("starter")
    expect(page.locator("#active-version")).to_have_text("v2")
    expect(page.locator("table.parameters tr[data-parameter='greeting']")).to_contain_text("^[a-z ]{1,40}$")
    expect(page.locator("table.parameters tr[data-parameter='cpus']")).to_contain_text("min 1 max 8")
    expect(page.locator("#push-instructions")).to_have_text("appliance templates push DIR --name starter")
    v1 = page.locator("table.versions tr[data-version='v1']")
    v2 = page.locator("table.versions tr[data-version='v2']")
    expect(v2.locator(".tag.active")).to_have_text("active")
    expect(v1.locator(".badge")).to_have_text("succeeded")
    expect(v1).to_contain_text("first")
    expect(page.locator("details.import-logs[data-version='v2'] pre.logs")).to_contain_text("init")

    v1.get_by_role("button", name="Promote").click()
    expect(flash(page, "success")).to_have_text("v1 is now the active version of starter.")
    expect(page.locator("#active-version")).to_have_text("v1")
    v2.get_by_role("button", name="Archive").click()
    expect(flash(page, "success")).to_contain_text("v2 of starter is archived")
    expect(v2.locator(".tag")).to_have_text(["archived"])
    expect(v2.get_by_role("button", name="Promote")).to_have_count(0)
    v2.get_by_role("button", name="Unarchive").click()
    expect(v2.get_by_role("button", name="Promote")).to_be_visible()

    # A member reads the template but gets no buttons that change it.
    owner.create_user(username="erin")
    member = new_context().new_page()
    log_in(member, "erin")
    member.goto("/templates/starter")
    expect(member.locator("#active-version")).to_have_text("v1")
    expect(member.get_by_role("button", name="Promote")).to_have_count(0)
    expect(member.get_by_role("button", name="Archive")).to_have_count(0)
    # Posting the form anyway is refused by the service, and the page says why.
    csrf = member.locator("input[name=csrf_token]").first.input_value()
    refused = member.request.post(f"{base_url}/templates/starter/versions/v2/promote", form={"csrf_token": csrf})
    assert refused.ok, refused.status  # redirected back to the template page, which says why
    assert "You are not allowed to update this template." in refused.text()
    member.reload()
    expect(member.locator("#active-version")).to_have_text("v1")
