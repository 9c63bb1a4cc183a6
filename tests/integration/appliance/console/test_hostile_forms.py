"""The console's forms and pages answer hostile input with a page saying what to fix, never a 500."""

from __future__ import annotations

import re

import pytest
import requests

from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.server import LiveServer

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _csrf(session: requests.Session, url: str) -> str:
    found = _CSRF.search(session.get(url, timeout=10).text)
    assert found, f"no CSRF token on {url}"
    return found.group(1)


@pytest.fixture
def browser(server: LiveServer, api: Api) -> requests.Session:
    """A browser session logged in to the console as the owner."""
    api.create_first_user("owner")
    session = requests.Session()
    token = _csrf(session, server.url + "/login")
    session.post(server.url + "/login", timeout=10,
                 data={"csrf_token": token, "login": "owner", "password": DEFAULT_PASSWORD, "next": ""})
    assert session.get(server.url + "/account", timeout=10, allow_redirects=False).status_code == 200
    return session


def _refused_page(response: requests.Response) -> None:
    assert response.status_code == 400, response.text[:500]
    assert response.headers["Content-Type"].startswith("text/html") and "Request refused" in response.text


def _refused_form(response: requests.Response, reason: str) -> None:
    """A form with a way back flashes the reason there."""
    assert response.status_code == 200 and response.history, response.text[:500]
    assert reason in response.text, response.text


@pytest.mark.security(finding=5)
def test_a_nul_byte_in_the_login_form_is_refused(server: LiveServer, api: Api) -> None:
    api.create_first_user("owner")
    session = requests.Session()
    token = _csrf(session, server.url + "/login")
    _refused_page(session.post(server.url + "/login", timeout=10,
                               data={"csrf_token": token, "login": "own\x00er", "password": "x", "next": ""}))


@pytest.mark.security(finding=5)
def test_control_characters_in_a_search_or_a_path_are_refused(server: LiveServer, browser: requests.Session) -> None:
    _refused_page(browser.get(server.url + "/users", params={"q": "\x00"}, timeout=10))
    _refused_page(browser.get(server.url + "/templates/a%00b", timeout=10))


@pytest.mark.security(finding=5)
@pytest.mark.parametrize("page", ["/users", "/audit"])
def test_an_offset_past_bigint_shows_the_first_page(server: LiveServer, browser: requests.Session, page: str) -> None:
    shown = browser.get(server.url + page, params={"offset": "99999999999999999999"}, timeout=10)
    assert shown.status_code == 200 and "owner" in shown.text


@pytest.mark.security(finding=5)
def test_a_token_lifetime_past_any_calendar_is_refused(server: LiveServer, browser: requests.Session) -> None:
    token = _csrf(browser, server.url + "/account")
    _refused_form(browser.post(server.url + "/account/tokens", timeout=10, data={
        "csrf_token": token, "form_nonce": "n1", "token_name": "ci", "lifetime": "999999999999d"}),
                  "Invalid lifetime: a duration must be at most")


@pytest.mark.security(finding=5)
def test_a_nul_byte_in_a_form_field_is_refused(server: LiveServer, browser: requests.Session) -> None:
    token = _csrf(browser, server.url + "/users")
    _refused_page(browser.post(server.url + "/users", timeout=10, data={
        "csrf_token": token, "username": "ali\x00ce", "email": "alice@example.org", "password": DEFAULT_PASSWORD}))
