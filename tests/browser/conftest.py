"""Browser fixtures: one PostgreSQL cluster, one live server and one Chromium per session.

Each test gets an empty database (tables truncated) and a fresh browser context, so cookies,
storage and dialogs never leak between tests. Chromium is Debian's package, never a download.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations
from appliance.pki.ca import CertificateAuthority, IssueRequest
from tests.support.conformance import answers_match_their_models  # noqa: F401  (autouse fixture)
from tests.support.postgres import create_database, running_cluster, truncate_all
from tests.support.server import LiveServer, live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
BROWSER_DB = "appliance_browser"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="package")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="package")
def db_conninfo(pg_cluster: EmbeddedPostgres) -> str:
    """The migrated database the browser tests' server runs on."""
    conninfo = create_database(pg_cluster.conninfo("postgres"), BROWSER_DB)
    apply_migrations(conninfo)
    return conninfo


@pytest.fixture(scope="package")
def site_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """The internal CA the server reports on, with one certificate issued."""
    ca = CertificateAuthority(tmp_path_factory.mktemp("site") / "pki")
    ca.init(b"browser-test-passphrase")
    ca.issue(IssueRequest("server", ("localhost",), ("127.0.0.1",)))
    return ca


@pytest.fixture(scope="package")
def server(db_conninfo: str, site_ca: CertificateAuthority) -> Iterator[LiveServer]:
    with live_server(db_conninfo, pki_dir=site_ca.root) as live:
        yield live


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium. "
                    "Install it with 'apt-get install chromium' (never 'playwright install').",
                    pytrace=False)
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture
def base_url(server: LiveServer, db_conninfo: str) -> str:
    """The live server's origin, its database emptied for this test (no users yet)."""
    truncate_all(db_conninfo)
    return server.url


@pytest.fixture
def new_context(browser: Browser, base_url: str) -> Iterator[Callable[[], BrowserContext]]:
    """Open more fresh browser contexts (another person, another browser); all closed after."""
    opened: list[BrowserContext] = []

    def make() -> BrowserContext:
        ctx = browser.new_context(base_url=base_url)
        ctx.set_default_timeout(TIMEOUT_MS)
        opened.append(ctx)
        return ctx

    yield make
    for ctx in opened:
        ctx.close()


@pytest.fixture
def context(new_context: Callable[[], BrowserContext]) -> BrowserContext:
    return new_context()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()

