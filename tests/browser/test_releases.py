"""The Releases page in Chromium: an owner follows the nav to a receipt and reads its SBOM diff; the
maintenance banner shows on every page while an upgrade runs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from appliance import maintenance
from appliance.db.database import Database
from appliance.releases import record_release
from appliance.sdk.releases import ReleaseRecord
from tests.browser.test_console import go_via_nav, log_in, make_owner


@pytest.fixture
def db(db_conninfo: str) -> Iterator[Database]:
    database = Database(db_conninfo, max_size=2)
    yield database
    maintenance.leave(database, actor="test")
    database.close()


def _record(db: Database, version: str, day: int, components: dict[str, str], **fields: str) -> None:
    started = datetime(2026, 1, day, 9, tzinfo=UTC)
    sbom = {"components": [{"name": name, "version": v} for name, v in components.items()]}
    with db.transaction() as conn:
        record_release(conn, ReleaseRecord.model_validate({
            "kind": "install", "to_version": version, "outcome": "succeeded", "actor": "root", "sbom": sbom,
            "started_at": started, "finished_at": started + timedelta(seconds=75), **fields}))


def test_an_owner_reads_a_release_and_its_sbom_diff_under_the_maintenance_banner(
        page: Page, base_url: str, db: Database) -> None:
    make_owner(base_url)
    _record(db, "1.0.0", 1, {"flask": "3.0.0", "six": "1.16.0"})
    _record(db, "1.1.0", 2, {"flask": "3.1.0", "asyncssh": "2.14.0"}, kind="upgrade", from_version="1.0.0")
    maintenance.enter(db, "upgrade to 1.2.0", timedelta(seconds=5), actor="test")
    log_in(page, "owner")
    expect(page.get_by_role("alert")).to_contain_text("Maintenance: upgrade to 1.2.0")

    go_via_nav(page, "Releases")
    expect(page.locator("h1")).to_contain_text("Releases")
    page.locator("table.releases tbody tr").first.get_by_role("link").click()
    expect(page.locator("h1")).to_have_text("Upgrade 1.0.0 → 1.1.0")
    diff = page.locator("table.sbom-diff tbody")
    expect(diff.locator("tr.added")).to_have_text("addedasyncssh2.14.0")
    expect(diff.locator("tr.changed")).to_have_text("changedflask3.0.0 → 3.1.0")
    expect(diff.locator("tr.removed")).to_have_text("removedsix1.16.0")
    expect(page.get_by_role("alert")).to_contain_text("upgrade to 1.2.0")
