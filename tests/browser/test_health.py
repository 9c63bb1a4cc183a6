"""The Health page in Chromium: an owner follows the nav, sees every section of the report, and dismisses a finding."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from appliance.sdk.health import SECTIONS
from tests.browser.test_console import go_via_nav, log_in, make_owner


def test_an_owner_sees_every_section_and_dismisses_a_finding_which_stays_shown(page: Page, base_url: str) -> None:
    make_owner(base_url)
    log_in(page, "owner")
    go_via_nav(page, "Health")
    expect(page.locator("h1")).to_contain_text("Health")
    for name in SECTIONS:
        expect(page.locator(f"#health-{name} h2")).to_contain_text(name)
    # The browser session's server runs no provisioner daemon: EPD01 says so, and an owner may dismiss it.
    daemons = page.locator("#health-provisioner_daemons")
    expect(daemons.locator("h2 .code")).to_have_text("error")
    finding = daemons.locator("tr.finding", has_text="EPD01")
    expect(finding).to_contain_text("No provisioner daemon")
    finding.get_by_role("button", name="Dismiss").click()
    expect(page.locator("#health-provisioner_daemons tr.finding.dismissed")).to_contain_text("EPD01")
    expect(page.locator("#health-provisioner_daemons h2 .code")).to_have_text("ok")
    page.locator("#health-provisioner_daemons").get_by_role("button", name="Count again").click()
    expect(page.locator("#health-provisioner_daemons h2 .code")).to_have_text("error")
