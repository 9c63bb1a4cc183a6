"""The Upgrade page in Chromium: upload a real signed bundle, watch it verified, see the plan, apply it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from appliance.pki.ca import CertificateAuthority
from tests.browser.test_console import log_in, make_owner
from tests.support.postgres import truncate_all
from tests.support.server import LiveServer
from tests.support.upgrades import VERSION, SignedBundle, signed_bundle, upgrade_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> SignedBundle:
    return signed_bundle(tmp_path_factory.mktemp("browser-bundle"))


@pytest.fixture(scope="module")
def site(db_conninfo: str, site_ca: CertificateAuthority, bundle: SignedBundle,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with upgrade_server(db_conninfo, site_ca.root, bundle, tmp_path_factory.mktemp("browser-upgrade")) as live:
        yield live


def test_an_owner_uploads_sees_verification_and_plan_then_applies(
        browser: Browser, site: LiveServer, db_conninfo: str, bundle: SignedBundle) -> None:
    truncate_all(db_conninfo)
    make_owner(site.url)
    context = browser.new_context(base_url=site.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    failed: list[str] = []  # a blocked script (CSP) or a missing asset; the browser's own favicon probe aside
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and "favicon" not in r.url else None)
    page.on("console", lambda m: failed.append(m.text) if m.type == "error" and "404" not in m.text else None)
    page.goto("/admin/upgrade")
    log_in(page, "owner")
    page.get_by_role("link", name="Upgrade").click()
    page.get_by_label("Bundle file").set_input_files(str(bundle.path))
    page.get_by_role("button", name="Upload and verify").click()
    # upgrade.js follows the gateway's verification, then reloads into the report and the plan.
    expect(page.locator("#verified")).to_be_visible()
    expect(page.locator("#bundle-version")).to_have_text(VERSION)
    expect(page.locator("#signers")).to_contain_text(bundle.key.fingerprint)
    expect(page.locator("#pending-migrations")).to_contain_text("000099_console_upgrade_test")
    sha256 = page.locator("#manifest-sha256").inner_text()
    page.get_by_role("button", name=f"Apply upgrade to {VERSION}").click()
    expect(page.get_by_text("Upgrade requested")).to_be_visible()
    expect(page.locator("#upgrade-request")).to_contain_text("requested by owner")
    expect(page.locator("#apply")).to_be_disabled()
    request = json.loads((site.config.upgrade_spool_dir / "apply.json").read_text())
    assert request["manifest_sha256"] == sha256 and request["actor"] == "owner"
    # The installer's journal, as it changes, shows up as steps.
    journal = {"kind": "upgrade", "outcome": "running", "steps": [
        {"name": "verify", "state": "done"}, {"name": "backup", "state": "started"}]}
    Path(site.config.upgrade_journal).write_text(json.dumps(journal))
    expect(page.locator('#upgrade-steps li[data-step="backup"]')).to_contain_text("started")
    assert failed == []
    context.close()
