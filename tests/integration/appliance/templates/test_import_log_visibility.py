"""Who reads a template version's import logs (finding 1): template admins and owners, over every way logs are
reached (the JSON API, the gateway's follow, the console page); members and auditors get a 403 and no line."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.api import Api
from tests.support.postgres import create_database, drop_database
from tests.support.server import LiveServer, live_server
from tests.support.workspaces import push, wait_version

pytestmark = pytest.mark.integration
MARKER = f"import-marker-{secrets.token_hex(8)}"
# The plan prints the output's value in the import log, as it printed the embedded database's password in
# the review's probe (`value = file("<data_dir>/postgres/password")`).
TEMPLATE = f"""
terraform {{
  required_providers {{
    appliance = {{ source = "appliance.internal/appliance/appliance" }}
  }}
}}
output "marker" {{
  value = "{MARKER}"
}}
"""


@pytest.fixture(scope="module")
def imported(appliance_mirror: Path, admin_conninfo: str, template_db: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, dict[str, Any]]]:
    """A server with one in-process daemon and one imported version whose import log shows MARKER."""
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH; these tests run the real terraform CLI")
    conninfo = create_database(admin_conninfo, "import_log_visibility", template=template_db)
    work = tmp_path_factory.mktemp("import-log-visibility")
    source = work / "template"
    source.mkdir()
    (source / "main.tf").write_text(TEMPLATE)
    try:
        with live_server(conninfo, mirror_dir=appliance_mirror, data_dir=work, provisioner_daemons=1,
                         provisioner_dir=work / "provisioner") as live:
            api = Api(live.url)
            api.create_first_user("owner")
            owner = api.as_user(api.login("owner"))
            for role in ("template-admin", "auditor", "member"):
                owner.create_user([] if role == "member" else [role], username=role.replace("-", ""))
            version = wait_version(owner, "leaky", push(owner, source, "leaky")["id"])
            assert version["job"]["status"] == "succeeded", version["job"]["error"]
            yield live, version
    finally:
        drop_database(admin_conninfo, "import_log_visibility")


def _as(live: LiveServer, username: str) -> Api:
    return Api(live.url).as_user(Api(live.url).login(username))


def _reads(live: LiveServer, username: str, version: dict[str, Any]) -> dict[str, requests.Response]:
    """The import logs as `username` reads them: JSON, the follow (server-sent events) and the console page."""
    api = _as(live, username)
    path = f"/api/v2/templateversions/{version['id']}/logs"
    return {"api": api.get(path),
            "follow": api.get(path, params={"follow": "true"}),
            "console": requests.get(f"{live.url}/templates/leaky", cookies={"appliance_session_token": api.token},
                                    timeout=30)}


@pytest.mark.security(finding=1)
@pytest.mark.parametrize("username", ["member", "auditor"], ids=["a plain member", "an auditor"])
def test_a_member_cannot_read_import_logs_over_the_api_the_follow_or_the_console(
        imported: tuple[LiveServer, dict[str, Any]], username: str) -> None:
    live, version = imported
    reads = _reads(live, username, version)
    for way in ("api", "follow"):
        assert reads[way].status_code == 403, (way, reads[way].text)
        assert reads[way].headers["Content-Type"].startswith("application/json"), way
        assert reads[way].json()["message"] == \
            "Only template admins and owners can read a template version's import logs.", way
        assert MARKER not in reads[way].text, way
    page = reads["console"]
    assert page.status_code == 200, "the template page itself stays readable: members create workspaces from it"
    assert MARKER not in page.text and "Import logs" not in page.text


@pytest.mark.security(finding=1)
@pytest.mark.parametrize("username", ["templateadmin", "owner"], ids=["a template admin", "an owner"])
def test_template_admins_and_owners_read_import_logs_everywhere(
        imported: tuple[LiveServer, dict[str, Any]], username: str) -> None:
    live, version = imported
    reads = _reads(live, username, version)
    assert reads["api"].status_code == 200
    assert MARKER in "\n".join(line["output"] for line in reads["api"].json()["logs"])
    assert reads["follow"].status_code == 200 and MARKER in reads["follow"].text
    assert "event: end" in reads["follow"].text
    assert reads["console"].status_code == 200 and MARKER in reads["console"].text


def test_a_missing_version_is_404_for_a_template_admin(imported: tuple[LiveServer, dict[str, Any]]) -> None:
    live, _ = imported
    answer = _as(live, "templateadmin").get("/api/v2/templateversions/00000000-0000-0000-0000-000000000000/logs")
    assert answer.status_code == 404 and "does not exist" in answer.json()["message"]
