"""The console as a person sees it in Chromium: setup, login, tokens, users, audit, CSP, CSRF."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import psycopg
import requests
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Locator,
    Page,
    Request,
    Response,
    expect,
)

from appliance.pki.ca import CertificateAuthority
from tests.support.api import DEFAULT_PASSWORD, Api

PASSWORD = DEFAULT_PASSWORD
SESSION_COOKIE = "appliance_session_token"


# -- helpers -------------------------------------------------------------------------------------


def make_owner(base_url: str, username: str = "owner") -> Api:
    """The first user (Owner), made through the API so tests start at the login page."""
    api = Api(base_url)
    api.create_first_user(username)
    return api.as_user(api.login(username))


def log_in(page: Page, login: str, password: str = PASSWORD) -> None:
    if "/login" not in page.url:
        page.goto("/login")
    page.get_by_label("Username or email").fill(login)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def fill_setup(page: Page, username: str, password: str, repeat: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.org")
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat password").fill(repeat)
    page.get_by_role("button", name="Create owner account").click()


def nav(page: Page) -> Locator:
    return page.locator("header.top nav")


def go_via_nav(page: Page, link: str) -> None:
    """Click a header link, as a person would, and require the page to render (HTTP 200)."""
    with page.expect_response(lambda r: r.request.resource_type == "document"
                              and not 300 <= r.status < 400) as answer:
        nav(page).get_by_role("link", name=link, exact=True).click()
    response = answer.value
    page.wait_for_url(response.url)  # the new page is loaded, not just requested
    heading = page.locator("h1").first.inner_text()
    assert response.status == 200, f"{link}: HTTP {response.status}, page says {heading!r}"


def flash(page: Page, category: str) -> Locator:
    return page.locator(f"main .flash.{category}")


def user_row(page: Page, username: str) -> Locator:
    return page.locator(f"table.users tr[data-username='{username}']")


def create_user_in_form(page: Page, username: str) -> None:
    form = page.locator("section.card", has=page.get_by_role("heading", name="Create a user"))
    form.get_by_label("Username").fill(username)
    form.get_by_label("Email").fill(f"{username}@example.org")
    form.get_by_label("Full name").fill(f"{username.title()} Example")
    form.get_by_label("Initial password").fill(PASSWORD)
    form.get_by_role("button", name="Create user").click()
    expect(flash(page, "success")).to_contain_text(f"User {username} created.")


def me_with_token(base_url: str, token: str) -> requests.Response:
    return requests.get(f"{base_url}/api/v2/users/me", timeout=10,
                        headers={"Authorization": f"Bearer {token}"})


def count_rows(conninfo: str, query: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def redirect_chain(response: Response | None) -> list[str]:
    """The paths a navigation went through, first to last."""
    assert response is not None
    paths: list[str] = []
    request: Request | None = response.request
    while request is not None:
        paths.insert(0, re.sub(r"^https?://[^/]+", "", request.url))
        request = request.redirected_from
    return paths


def audit_rows(page: Page) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.locator("table.audit tbody tr").evaluate_all(
        """rows => rows.map(r => ({
             user: r.cells[1]?.innerText.trim(), action: r.cells[2]?.innerText.trim(),
             resource: r.cells[3]?.innerText.trim(), status: r.cells[4]?.innerText.trim()}))""")
    return rows


# -- 1. first-user setup --------------------------------------------------------------------------


def test_first_user_setup_creates_the_owner(page: Page, base_url: str, db_conninfo: str) -> None:
    response = page.goto("/")
    assert redirect_chain(response) == ["/", "/login?next=/", "/setup"]
    expect(page.get_by_role("heading", name="Create the first user")).to_be_visible()
    expect(page).to_have_title("First-time setup · Appliance")

    fill_setup(page, "alice", PASSWORD, PASSWORD + "-typo")
    expect(page.get_by_role("alert")).to_have_text("The two passwords differ.")
    expect(page).to_have_url(f"{base_url}/setup")
    expect(page.get_by_label("Username")).to_have_value("alice")  # what was typed is kept
    expect(page.get_by_label("Password", exact=True)).to_have_value("")  # secrets are not
    assert count_rows(db_conninfo, "SELECT count(*) FROM users") == 0
    assert count_rows(db_conninfo, "SELECT count(*) FROM api_keys") == 0

    fill_setup(page, "alice", PASSWORD, PASSWORD)
    expect(page).to_have_url(f"{base_url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, alice")
    expect(flash(page, "success")).to_have_text(
        "Welcome, alice. You are the owner of this appliance.")
    expect(page.locator("dl.facts .tag")).to_have_text(["Owner"])
    expect(page.locator("header .who")).to_have_text("alice")
    expect(nav(page).get_by_role("link")).to_have_text(
        ["Dashboard", "Workspaces", "Templates", "Users", "Audit log", "Releases", "Health", "Providers", "Images",
         "Certificates", "Relay", "Upgrade", "Account"])

    # Setup is closed once a user exists.
    page.goto("/setup")
    expect(page).to_have_url(f"{base_url}/login")
    expect(flash(page, "info")).to_have_text(
        "Setup is already done. Log in with an existing account.")
    assert count_rows(db_conninfo, "SELECT count(*) FROM users") == 1


# -- 2. login and logout --------------------------------------------------------------------------


def test_login_errors_cookie_and_logout(page: Page, context: BrowserContext, base_url: str) -> None:
    make_owner(base_url)
    page.goto("/account")
    expect(page).to_have_url(f"{base_url}/login?next=/account")

    log_in(page, "owner", "not-the-password")
    expect(page.get_by_role("alert")).to_have_text("Incorrect username/email or password.")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_label("Username or email")).to_have_value("owner")

    log_in(page, "owner@example.org")  # email works too, and "next" is followed
    expect(page).to_have_url(f"{base_url}/account")
    go_via_nav(page, "Dashboard")
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, owner")

    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies[SESSION_COOKIE]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert session["path"] == "/"
    assert SESSION_COOKIE not in page.evaluate("document.cookie")  # out of scripts' reach
    assert me_with_token(base_url, session["value"]).status_code == 200

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{base_url}/login")
    expect(flash(page, "info")).to_have_text("You are logged out.")
    assert SESSION_COOKIE not in {c["name"] for c in context.cookies()}
    assert me_with_token(base_url, session["value"]).status_code == 401  # revoked, not just dropped

    page.goto("/")
    expect(page).to_have_url(f"{base_url}/login?next=/")
    expect(nav(page)).to_have_count(0)


# -- 3. API tokens ---------------------------------------------------------------------------------


def test_api_token_is_shown_once_and_can_be_revoked(
    page: Page, context: BrowserContext, base_url: str
) -> None:
    make_owner(base_url)
    log_in(page, "owner")
    go_via_nav(page, "Account")
    expect(page.get_by_text("No active tokens.")).to_be_visible()

    page.get_by_label("Name", exact=True).fill("ci")
    page.get_by_label("Lifetime").select_option(label="7 days")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_role("heading", name="Token “ci” created")).to_be_visible()
    token = page.locator("#new-token-value").inner_text().strip()
    assert token

    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    new_token = page.locator("#new-token")  # the SSH key section has a Copy button of its own
    new_token.get_by_role("button", name="Copy").click()
    expect(new_token.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == token

    me = me_with_token(base_url, token)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "owner"

    page.goto("/account")
    expect(page.locator("#new-token-value")).to_have_count(0)
    assert token not in page.content()
    secret = token.rsplit("-", 1)[-1]
    assert secret not in page.content()
    row = page.locator("tr", has=page.get_by_role("cell", name="ci", exact=True))
    expect(row).to_have_count(1)

    answers = [False, True]  # first dismiss the confirmation, then accept it
    messages: list[str] = []

    def answer(dialog: Dialog) -> None:
        messages.append(dialog.message)
        if answers.pop(0):
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", answer)
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_have_count(1)
    assert me_with_token(base_url, token).status_code == 200  # dismissed: nothing happened

    row.get_by_role("button", name="Revoke").click()
    expect(flash(page, "success")).to_contain_text("revoked.")
    expect(page.get_by_text("No active tokens.")).to_be_visible()
    assert messages == ["Revoke token ci? Scripts using it will stop working."] * 2
    revoked = me_with_token(base_url, token)
    assert revoked.status_code == 401, revoked.text


def test_resubmitting_the_create_token_form_creates_nothing_more(page: Page, base_url: str) -> None:
    """A browser refresh re-posts the form; the second post must explain, not fail or duplicate."""
    make_owner(base_url)
    log_in(page, "owner")
    page.goto("/account")
    form = page.locator("form[action$='/account/tokens']")
    submitted = {name: form.locator(f"input[name='{name}']").input_value() for name in ("csrf_token", "form_nonce")}
    form.get_by_label("Name", exact=True).fill("ci")
    form.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token-value")).to_have_count(1)

    again = page.request.post(base_url + "/account/tokens", max_redirects=0,
                              form={**submitted, "token_name": "ci", "lifetime": "30d"})
    assert again.status == 302
    page.goto("/account")
    expect(flash(page, "info")).to_contain_text("already created and its value shown once")
    expect(page.locator("tr", has=page.get_by_role("cell", name="ci", exact=True))).to_have_count(1)


def test_the_account_page_shows_the_ssh_key_and_regenerates_it_after_a_confirmation(
        page: Page, base_url: str) -> None:
    make_owner(base_url)
    log_in(page, "owner")
    page.goto("/account")
    key = page.locator("#git-ssh-public-key")
    first = key.inner_text().strip()
    assert first.startswith("ssh-ed25519 ")
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("#git-ssh-key").get_by_role("button", name="Regenerate").click()
    expect(flash(page, "success")).to_contain_text("A new SSH key was made")
    assert key.inner_text().strip() not in ("", first)


# -- 4. users admin and what each role sees -------------------------------------------------------


def test_users_admin_and_role_based_navigation(
    page: Page, new_context: Callable[[], BrowserContext], base_url: str
) -> None:
    make_owner(base_url)
    log_in(page, "owner")
    go_via_nav(page, "Users")
    expect(page.get_by_role("heading", level=1)).to_have_text("Users 1")

    create_user_in_form(page, "bob")
    bob = user_row(page, "bob")
    expect(bob).to_contain_text("bob@example.org · Bob Example")
    expect(bob.locator(".status")).to_have_text("active")
    expect(user_row(page, "owner").locator("td.actions")).to_have_text("you")

    bob.get_by_role("button", name="Suspend").click()
    expect(flash(page, "success")).to_have_text("User bob is now suspended.")
    expect(bob.locator(".status")).to_have_text("suspended")

    bob_page = new_context().new_page()
    log_in(bob_page, "bob")
    expect(bob_page.get_by_role("alert")).to_have_text("This account is suspended.")
    expect(bob_page).to_have_url(re.compile(r"/login$"))

    bob.get_by_role("button", name="Activate").click()
    expect(flash(page, "success")).to_have_text("User bob is now active.")
    expect(bob.locator(".status")).to_have_text("active")

    bob.get_by_label("Auditor").check()
    bob.get_by_role("button", name="Save roles").click()
    expect(flash(page, "success")).to_have_text("Roles of bob: Auditor.")
    expect(bob.get_by_label("Auditor")).to_be_checked()
    expect(bob.get_by_label("Owner")).not_to_be_checked()

    create_user_in_form(page, "carol")  # stays a plain member

    # An auditor reads users and the audit log (rbac AUDITOR: audit_log, user, template: read).
    log_in(bob_page, "bob")
    expect(bob_page.get_by_role("heading", level=1)).to_have_text("Hello, Bob Example")
    expect(bob_page.locator("dl.facts .tag")).to_have_text(["Auditor"])
    expect(nav(bob_page).get_by_role("link")).to_have_text(
        ["Dashboard", "Workspaces", "Templates", "Users", "Audit log", "Releases", "Health", "Providers",
         "Account"])
    go_via_nav(bob_page, "Users")
    expect(user_row(bob_page, "carol")).to_be_visible()
    expect(bob_page.get_by_role("checkbox")).to_have_count(0)  # read-only: no role forms
    expect(bob_page.get_by_role("button", name="Suspend")).to_have_count(0)
    expect(bob_page.get_by_role("heading", name="Create a user")).to_have_count(0)
    expect(user_row(bob_page, "bob").locator(".tag")).to_have_text(["Auditor"])
    go_via_nav(bob_page, "Audit log")
    expect(bob_page.get_by_role("heading", level=1)).to_contain_text("Audit log")

    # A plain member sees neither link, and the audit log is refused.
    carol_page = new_context().new_page()
    log_in(carol_page, "carol")
    expect(carol_page.get_by_role("heading", level=1)).to_have_text("Hello, Carol Example")
    expect(carol_page.locator("dl.facts .tag")).to_have_text(["Member"])
    expect(nav(carol_page).get_by_role("link")).to_have_text(
        ["Dashboard", "Workspaces", "Templates", "Providers", "Account"])
    refused = carol_page.goto("/audit")
    assert refused is not None
    assert refused.status == 403
    expect(carol_page.get_by_role("heading", level=1)).to_have_text("Request refused")
    expect(carol_page.get_by_text("You are not allowed to read this audit log.")).to_be_visible()


# -- 5. audit log ----------------------------------------------------------------------------------


def test_audit_log_lists_filters_and_exports(page: Page, base_url: str) -> None:
    owner_api = make_owner(base_url)
    owner_api.create_user(username="dave")
    log_in(page, "owner", "wrong-password-1")
    expect(page.get_by_role("alert")).to_be_visible()
    log_in(page, "owner")
    go_via_nav(page, "Account")
    page.get_by_label("Name", exact=True).fill("ci")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token-value")).to_be_visible()

    go_via_nav(page, "Audit log")
    rows = audit_rows(page)
    seen = {(r["action"], r["resource"], r["status"]) for r in rows}
    assert ("login", "api_key", "401") in seen  # the failed attempt
    assert ("login", "api_key owner", "201") in seen  # the console login
    assert ("create", "user dave", "201") in seen
    assert ("create", "api_key ci", "201") in seen
    assert ("create", "user owner", "201") in seen  # the first user
    assert all(r["user"] == "owner" for r in rows)
    expect(page.locator("h1 .count")).to_have_text(str(len(rows)))
    expect(page.locator("table.audit .code.bad")).to_have_text(["401"])

    page.get_by_label("Action").select_option("login")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]action=login(&|$)"))
    page.wait_for_load_state()
    expect(page.get_by_label("Action")).to_have_value("login")
    logins = audit_rows(page)
    assert logins
    assert {r["action"] for r in logins} == {"login"}
    assert len(logins) == sum(r["action"] == "login" for r in rows)
    expect(page.locator("h1 .count")).to_have_text(str(len(logins)))

    export = page.get_by_role("link", name="Export JSON lines")
    href = export.get_attribute("href")
    assert href is not None
    assert "action=login" in href
    response = page.request.get(href)  # the page's own cookies
    assert response.status == 200, response.text()
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers.get("content-disposition", "")
    lines = [json.loads(line) for line in response.text().splitlines()]
    assert len(lines) == len(logins)
    assert {line["action"] for line in lines} == {"login"}
    assert {line["status_code"] for line in lines} == {201, 401}

    everything = page.request.get("/api/v2/audit/export")
    entries = [json.loads(line) for line in everything.text().splitlines()]
    targets = {(e["action"], e["resource_target"]) for e in entries}
    assert {("create", "dave"), ("create", "ci"), ("login", "owner")} <= targets


# -- 6. CSP and no external assets -----------------------------------------------------------------


def test_every_request_stays_on_the_appliance_under_a_strict_csp(
    page: Page, context: BrowserContext, base_url: str
) -> None:
    requested: list[str] = []
    documents: list[Response] = []
    errors: list[str] = []
    context.on("request", lambda req: requested.append(req.url))
    context.on("response", lambda res: documents.append(res)
               if res.request.resource_type == "document" else None)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    page.on("dialog", lambda dialog: dialog.accept())

    page.goto("/")
    fill_setup(page, "erin", PASSWORD, PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, erin")
    # The stylesheet and the script were allowed to load and apply.
    expect(page.locator("header.top")).to_have_css("background-color", "rgb(17, 24, 39)")

    nav(page).get_by_role("link", name="Account").click()
    page.get_by_label("Name", exact=True).fill("deploy")
    page.get_by_role("button", name="Create token").click()
    expect(page.locator("#new-token-value")).to_be_visible()
    page.goto("/account")
    page.get_by_role("button", name="Revoke").click()  # needs app.js for the confirmation
    expect(page.get_by_text("No active tokens.")).to_be_visible()

    nav(page).get_by_role("link", name="Users").click()
    expect(page).to_have_url(f"{base_url}/users")
    page.goto("/users?q=erin&status=active")
    nav(page).get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option("create")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=create"))
    page.goto("/no-such-page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    page.goto("/")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{base_url}/login")

    assert requested
    foreign = [url for url in requested if not url.startswith(f"{base_url}/")]
    assert foreign == []
    assert any(url.endswith("/static/app.css") for url in requested)
    assert any(url.endswith("/static/app.js") for url in requested)

    assert len(documents) >= 10
    for doc in documents:
        csp = doc.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp, (doc.url, csp)
        assert "script-src 'self'" in csp, (doc.url, csp)
        assert "unsafe-inline" not in csp, (doc.url, csp)
        assert "frame-ancestors 'none'" in csp, (doc.url, csp)

    # An HTTP error page (the 404 above) logs "Failed to load resource"; nothing else may.
    unexpected = [e for e in errors if not e.startswith("Failed to load resource")]
    assert unexpected == []
    assert not any("Content Security Policy" in e for e in errors)


# -- 7. CSRF ---------------------------------------------------------------------------------------


def test_forms_without_the_csrf_token_are_refused(
    page: Page, base_url: str, db_conninfo: str
) -> None:
    make_owner(base_url)
    log_in(page, "owner")
    page.goto("/account")
    tokens = "SELECT count(*) FROM api_keys WHERE login_type = 'token'"

    missing = page.request.post("/account/tokens", form={"token_name": "sneaky", "lifetime": "30d"})
    assert missing.status == 400
    assert "Form expired" in missing.text()
    forged = page.request.post("/account/tokens", form={
        "token_name": "sneaky", "lifetime": "30d", "csrf_token": "forged"})
    assert forged.status == 400
    # The API refuses a cookie-authenticated change that lacks the X-CSRF-Token header.
    api = page.request.post("/api/v2/users/me/keys/tokens", data={"token_name": "sneaky"})
    assert api.status == 403, api.text()
    assert count_rows(db_conninfo, tokens) == 0

    page.reload()
    expect(page.get_by_text("No active tokens.")).to_be_visible()
    expect(page.get_by_text("sneaky")).to_have_count(0)

    # Control: the very same request with the page's own token goes through.
    csrf = page.locator("input[name=csrf_token]").first.input_value()
    accepted = page.request.post("/account/tokens", form={
        "token_name": "legit", "lifetime": "30d", "csrf_token": csrf})
    assert accepted.status == 201
    assert count_rows(db_conninfo, tokens) == 1


# -- 9. certificates admin page -------------------------------------------------------------------


def test_owners_see_the_ca_fingerprint_and_certificate_expiry(
    page: Page, new_context: Callable[[], BrowserContext], base_url: str, site_ca: CertificateAuthority
) -> None:
    owner = make_owner(base_url)
    owner.create_user(username="dave")
    log_in(page, "owner")
    go_via_nav(page, "Certificates")
    expect(page.locator("#root-fingerprint")).to_have_text(site_ca.root_fingerprint())
    server_row = page.locator("tr[data-name='server']")
    expect(server_row.locator(".state")).to_have_text("valid")
    expect(server_row).to_contain_text(site_ca.current("server").not_after.strftime("%Y-%m-%d"))  # type: ignore[union-attr]
    bundle = page.request.get(base_url + "/api/v2/pki/ca.pem")
    assert bundle.body() == site_ca.trust_bundle_pem()

    member = new_context().new_page()
    log_in(member, "dave")
    expect(nav(member).get_by_role("link", name="Certificates")).to_have_count(0)
    refused = member.goto("/admin/certificates")
    assert refused is not None and refused.status == 403


def test_owners_see_the_relay_region_and_its_live_counters(
    page: Page, new_context: Callable[[], BrowserContext], base_url: str
) -> None:
    owner = make_owner(base_url)
    owner.create_user(username="erin")
    log_in(page, "owner")
    go_via_nav(page, "Relay")
    expect(page.locator("#relay-region")).to_contain_text("999 · Appliance Embedded Relay")
    expect(page.locator("#relay-region")).to_contain_text("no STUN: every byte is relayed")
    # The relay in this server writes its counters every few seconds; the page shows them once it has.
    for _ in range(20):
        if page.locator("table.relay-counters").count():
            break
        page.wait_for_timeout(1000)
        page.reload()
    expect(page.locator("table.relay-counters td[data-counter='connections']")).to_have_text("0")

    member = new_context().new_page()
    log_in(member, "erin")
    expect(nav(member).get_by_role("link", name="Relay")).to_have_count(0)
    refused = member.goto("/admin/relay")
    assert refused is not None and refused.status == 403
