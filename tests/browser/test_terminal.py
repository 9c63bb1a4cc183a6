"""The web terminal in Chromium: a shell through the gateway and the relay to a stand-in agent; a reload
re-attaches to the same shell with its scrollback; the terminal follows the window's size."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from bundles.build.console_assets import vendor
from tests.support.agents import SeededAgent, seed_agent, seed_template
from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.relay_agent import StandInAgent, agent_in_thread
from tests.support.server import LiveServer

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module", autouse=True)
def console_assets() -> None:
    vendor(REPO)  # what `make test` does first; cached, so a no-op after the first run


@pytest.fixture
def running(base_url: str, server: LiveServer, db_conninfo: str, tmp_path: Path) -> Iterator[SeededAgent]:
    owner = Api(base_url)
    owner.create_first_user("owner")
    owner = owner.as_user(owner.login("owner"))
    seed_template(db_conninfo)
    seeded = seed_agent(owner, db_conninfo, name="dev", apps=[
        {"slug": "greeter", "display_name": "Greeter", "command": "echo greeted-$((6*7)); exec sh"},
        {"slug": "web", "display_name": "Web", "url": "http://localhost:8080"}])
    with agent_in_thread(StandInAgent(server.url, seeded.token, str(tmp_path))):
        yield seeded


def log_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Username or email").fill("owner")
    page.get_by_label("Password", exact=True).fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("header .who")).to_have_text("owner")


def screen(page: Page) -> str:
    return page.locator(".xterm-rows").inner_text().replace("\xa0", " ")


def run(page: Page, command: str, pattern: str) -> re.Match[str]:
    """Type a command line and wait until its output (a line matching `pattern`) is on the screen."""
    page.locator("#terminal").click()
    page.keyboard.type(command + "\n")
    expect(page.locator(".xterm-rows")).to_contain_text(re.compile(pattern))
    found = list(re.finditer(pattern, screen(page)))
    assert found, screen(page)
    return found[-1]


def test_a_terminal_runs_commands_and_a_reload_finds_the_same_shell(page: Page, running: SeededAgent) -> None:
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if _is_csp_script_refusal(m) else None)
    log_in(page)
    page.goto(f"/workspaces/{running.workspace_id}")
    page.get_by_role("link", name="Terminal").click()
    expect(page).to_have_url(re.compile(rf"/workspaces/{running.workspace_id}/terminal"))
    expect(page.locator("#terminal-status")).to_have_text("Connected.")
    marker = run(page, "echo marker-$RANDOM", r"marker-\d+")[0]
    pid = run(page, "echo pid-$$", r"pid-(\d+)")[1]

    page.reload()
    expect(page.locator("#terminal-status")).to_have_text("Connected.")
    expect(page.locator(".xterm-rows")).to_contain_text(marker)  # the scrollback, replayed by the agent
    assert run(page, "echo again-$$", r"again-(\d+)")[1] == pid
    assert not refused


def test_the_terminal_follows_the_window_size(page: Page, running: SeededAgent) -> None:
    log_in(page)
    page.set_viewport_size({"width": 1200, "height": 800})
    page.goto(f"/workspaces/{running.workspace_id}/terminal")
    expect(page.locator("#terminal-status")).to_have_text("Connected.")
    big = run(page, "echo size-$(stty size | tr ' ' x)", r"size-(\d+)x(\d+)")
    page.set_viewport_size({"width": 700, "height": 500})
    small = run(page, "echo small-$(stty size | tr ' ' x)", r"small-(\d+)x(\d+)")
    rows, cols = int(small[1]), int(small[2])
    assert rows < int(big[1]) and cols < int(big[2])
    box = page.locator(".xterm-screen").bounding_box()
    assert box is not None and box["width"] <= 700


def _is_csp_script_refusal(message: ConsoleMessage) -> bool:
    return message.type == "error" and "Content Security Policy" in message.text and "script" in message.text


def test_an_app_with_a_command_opens_a_terminal_running_it(page: Page, running: SeededAgent) -> None:
    log_in(page)
    page.goto(f"/workspaces/{running.workspace_id}")
    expect(page.locator(".agent-connect [data-app=web]")).to_have_count(0)  # a URL app is not a terminal
    page.locator(".agent-connect [data-app=greeter]").click()
    expect(page.locator("h1")).to_contain_text("Greeter")
    expect(page.locator(".xterm-rows")).to_contain_text("greeted-42")
    page.goto(f"/workspaces/{running.workspace_id}/terminal?app=web")  # no command: nothing to run
    expect(page.get_by_role("status").filter(has_text="has no app 'web' with a command")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/workspaces/{running.workspace_id}$"))
