"""Every route in the live OpenAPI document, driven with hostile strings and numbers: never a 5xx, always JSON.

The owner's token and the provisioner key go with every request, so input reaches the views
behind authentication. Path parameters, query parameters (declared and unknown) and JSON bodies
built from each operation's schema get NUL bytes, control characters, a trailing newline,
non-ASCII digits, very long strings, and numbers past every integer type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.sdk.provisionerd import DAEMON_HEADER, KEY_HEADER
from tests.support.api import Api
from tests.support.server import LiveServer, live_server
from tests.support.workspaces import MINIMAL, push

PSK = "hostile-input-test-key"
MISSING = "00000000-0000-4000-8000-000000000000"
DAEMON_ID = "6f1c2a9e-3b1d-4c8e-9a57-0e2f4b6d8c10"
EXAMPLES_PER_ROUTE = 25
# Strings that have each reached PostgreSQL, int() or a regex's `$` and come back as a 500.
HOSTILE_STRINGS = [
    "\x00", "a\x00b", "owner\n", "\n", "ws-1\r\n", "\t", "\x1b[31m", "\x7f", "\x85", "\u2028",
    "\u00b2", "v\u00b2", "\u0661\u0662", "99999999999999999999", "-1", "1e999", "999999999999d",
    "%00", "../..", "a" * 5000, "\U0001f600", "NaN", "me", "",
    "true",  # to reach the gateway's log follows
]
HOSTILE_NUMBERS = [10**20, -(10**20), 2**63, 2**31, -1, 0, 1e308, -1e308, math.inf, 0.5]

hostile_text = st.one_of(
    st.sampled_from(HOSTILE_STRINGS),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.builds(lambda s, c: s + c, st.text(max_size=10), st.sampled_from(["\n", "\x00", "\r", "\x1f"])),
)
# A URL stays under the HTTP parsers' line limit (8 KiB in aiohttp, waitress and nginx), which answer in their
# own words before the app sees the request; 5,000 characters go in bodies.
url_text = hostile_text.map(lambda s: s[:700])
# Lone surrogates travel inside JSON (as \ud800) but cannot be written into a URL.
hostile_json_text = st.one_of(hostile_text, st.sampled_from(["\ud800", "x\udfff"]))
hostile_number = st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.integers())
anything = st.one_of(hostile_json_text, hostile_number, st.booleans(), st.none(),
                     st.lists(hostile_json_text, max_size=3), st.dictionaries(hostile_json_text, hostile_json_text,
                                                                              max_size=2))


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _value(schema: dict[str, Any], doc: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Hostile values shaped like the schema (most of the time), so they get past the type check."""
    schema = _resolve(schema, doc)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return st.one_of(*(_value(option, doc, depth) for option in options))
    kind = schema.get("type")
    shaped: st.SearchStrategy[Any]
    if kind == "string":
        shaped = hostile_json_text
    elif kind in ("integer", "number"):
        shaped = hostile_number
    elif kind == "array" and depth < 3:
        shaped = st.lists(_value(schema.get("items", {}), doc, depth + 1), max_size=3)
    elif kind == "object" and depth < 3:
        shaped = _object(schema, doc, depth + 1)
    else:
        shaped = anything
    return st.one_of(shaped, shaped, shaped, anything)


def _object(schema: dict[str, Any], doc: dict[str, Any], depth: int) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    if not properties:
        extra = schema.get("additionalProperties")
        values = _value(extra, doc, depth) if isinstance(extra, dict) else anything
        return st.dictionaries(hostile_json_text, values, max_size=3)
    return st.fixed_dictionaries(
        {name: _value(prop, doc, depth) for name, prop in properties.items() if name in schema.get("required", [])},
        optional={name: _value(prop, doc, depth) for name, prop in properties.items()
                  if name not in schema.get("required", [])})


def _query_value(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    kind = schema.get("type") or next((s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"), "")
    numbers = hostile_number.map(lambda n: str(n) if not isinstance(n, float) else repr(n))
    return st.one_of(url_text, numbers) if kind in ("integer", "number") else url_text


def _rarely(hostile: st.SearchStrategy[Any], usual: Any) -> st.SearchStrategy[Any]:
    """Mostly `usual`, so one hostile part at a time gets past the others to the view."""
    return st.one_of(st.just(usual), st.just(usual), st.just(usual), hostile)


def _request_strategy(path: str, operation: dict[str, Any], doc: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    params = operation.get("parameters", [])
    # A path part is hostile half the time; else it names something real (or well-formed and missing).
    real = st.sampled_from(["me", "owner", MISSING, "starter"])
    path_values = {p["name"]: st.one_of(real, url_text).map(lambda s: quote(s, safe=""))
                   for p in params if p["in"] == "path"}
    query = {p["name"]: _query_value(p.get("schema", {})) for p in params if p["in"] == "query"}
    url = st.fixed_dictionaries(path_values).map(lambda values: path.format(**values))
    body: st.SearchStrategy[Any] = st.none()
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        body = _rarely(anything, None).flatmap(
            lambda odd: st.just(odd) if odd is not None else _value(content["application/json"]["schema"], doc))
    elif content or path.endswith(("/files", "/state")):  # a raw upload: hostile bytes
        body = st.binary(max_size=64)
    return st.fixed_dictionaries({"url": url, "query": st.fixed_dictionaries({}, optional=query),
                                  "extra": _rarely(st.dictionaries(url_text, url_text, min_size=1,
                                                                   max_size=1), {}),
                                  "body": body})


def _send(server: LiveServer, token: str, method: str, call: dict[str, Any]) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", KEY_HEADER: PSK, DAEMON_HEADER: DAEMON_ID}
    kwargs: dict[str, Any] = {"params": {**call["extra"], **call["query"]}}
    if isinstance(call["body"], bytes):
        kwargs["data"] = call["body"]
        headers["Content-Type"] = "application/octet-stream"
    elif call["body"] is not None:  # NaN and Infinity as Python writes them: json.loads reads them back
        kwargs["data"] = json.dumps(call["body"])
        headers["Content-Type"] = "application/json"
    return requests.request(method, server.url + call["url"], headers=headers, timeout=30, **kwargs)


def _problem(response: requests.Response) -> str | None:
    if response.status_code >= 500:
        return f"{response.status_code}: {response.text[:300]}"
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
        if not (isinstance(body, dict) and body.get("message")):
            return f"{response.status_code} without a message: {body!r}"
    return None


@pytest.fixture
def hostile_server(fresh_db: str, site_pki: Path) -> Iterator[tuple[LiveServer, str, str]]:
    """A server of its own (the provisioner key set), a template "starter" with a queued v1, and two owner
    sessions: one for logout to end."""
    with live_server(fresh_db, pki_dir=site_pki, provisioner_psk=PSK) as live:
        api = Api(live.url)
        api.create_first_user("owner")
        token = api.login("owner")
        push(api.as_user(token), MINIMAL, "starter")
        yield live, token, api.login("owner")


def _probe(server: LiveServer, token: str, method: str, calls: st.SearchStrategy[dict[str, Any]]) -> str | None:
    """Run one operation's examples; the first (shrunk) failure, or None."""

    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(call=calls)
    def probe(call: dict[str, Any]) -> None:
        problem = _problem(_send(server, token, method, call))
        assert problem is None, f"{method} {call['url'][:80]} -> {problem} (sent {call!r:.300})"

    try:
        probe()
    except AssertionError as err:
        return str(err).splitlines()[0][:600]
    return None


@pytest.mark.security(finding=5)
def test_no_route_answers_hostile_input_with_a_server_error(hostile_server: tuple[LiveServer, str, str]) -> None:
    server, token, logout_token = hostile_server
    doc = requests.get(server.url + "/api/v2/openapi.json", timeout=10).json()
    # Deletions last, so "starter" and "owner" are there for the other routes to find.
    calls = sorted(((path, method, operation) for path, operations in doc["paths"].items()
                    for method, operation in operations.items()), key=lambda call: call[1] == "delete")
    failures = [_probe(server, logout_token if path.endswith("/logout") else token, method.upper(),
                       _request_strategy(path, operation, doc)) for path, method, operation in calls]
    assert not any(failures), "\n".join(f for f in failures if f)


# The probes of the security review, one by one, on the shared server.

def _refused(response: requests.Response, field: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["message"] and body["detail"], body
    assert body["validations"][0]["field"] == field, body
    return body


@pytest.mark.security(finding=5)
def test_a_nul_byte_in_the_login_username_is_refused_naming_the_field(api: Api) -> None:
    api.create_first_user("owner")
    refused = api.post("/api/v2/users/login", json={"username": "own\x00er", "password": "whatever-it-is"})
    assert "U+0000" in _refused(refused, "username")["message"]


@pytest.mark.security(finding=5)
@pytest.mark.parametrize(("path", "param"), [("/api/v2/users", "q"), ("/api/v2/audit", "username"),
                                             ("/api/v2/audit/export", "action"), ("/api/v2/workspaces", "owner")])
def test_a_nul_byte_or_a_control_character_in_a_query_is_refused(owner_api: Api, path: str, param: str) -> None:
    for value in ("\x00", "a\x1b[2J", "a\n"):
        _refused(owner_api.get(path, params={param: value}), param)


@pytest.mark.security(finding=5)
def test_a_nul_byte_in_a_path_is_refused(owner_api: Api) -> None:
    for path in ("/api/v2/users/%00", "/api/v2/templates/a%00b/versions", "/api/v2/workspaces/ws%0A"):
        _refused(owner_api.get(path), "path")


@pytest.mark.security(finding=5)
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/v2/users", {"username": "alice\n", "email": "alice@example.org", "password": "correct-horse-1"},
     "username"),
    ("/api/v2/users", {"username": "alice", "email": "alice@example.org\n", "password": "correct-horse-1"}, "email"),
    ("/api/v2/templates", {"name": "starter\n"}, "name"),
    ("/api/v2/workspaces", {"template": "starter", "name": "ws\n"}, "name"),
    ("/api/v2/users/me/keys/tokens", {"token_name": "ci\n"}, "token_name"),
], ids=["username", "email", "template", "workspace", "token"])
def test_a_name_with_a_trailing_newline_is_refused(owner_api: Api, path: str, body: dict[str, str],
                                                   field: str) -> None:
    _refused(owner_api.post(path, json=body), field)


@pytest.mark.security(finding=5)
@pytest.mark.parametrize("lifetime", ["999999999999d", 10**20, "\u0661\u0662d", "12\u00b2"])
def test_a_token_lifetime_past_any_calendar_is_refused(owner_api: Api, lifetime: object) -> None:
    _refused(owner_api.post("/api/v2/users/me/keys/tokens", json={"token_name": "ci", "lifetime": lifetime}),
             "lifetime")


@pytest.mark.security(finding=5)
@pytest.mark.parametrize("path", ["/api/v2/users", "/api/v2/audit"])
def test_an_offset_past_bigint_is_refused(owner_api: Api, path: str) -> None:
    _refused(owner_api.get(path, params={"offset": "99999999999999999999"}), "offset")
    assert owner_api.get(path, params={"offset": str(2**63 - 1)}).status_code == 200


@pytest.mark.security(finding=5)
def test_numbers_past_bigint_and_non_finite_numbers_in_a_body_are_refused(owner_api: Api) -> None:
    for raw in (b'{"token_name": "ci", "lifetime": 99999999999999999999999}', b'{"token_name": "ci", "lifetime": NaN}'):
        refused = owner_api.post("/api/v2/users/me/keys/tokens", data=raw, headers={"Content-Type": "application/json"})
        _refused(refused, "lifetime")


@pytest.mark.security(finding=5)
def test_a_version_written_with_a_superscript_digit_is_not_found(owner_api: Api) -> None:
    push(owner_api, MINIMAL, "starter")
    for ref in ("v\u00b2", "\u00b2", "v99999999999", "v\u0661"):
        missing = owner_api.get(f"/api/v2/templates/starter/versions/{quote(ref)}")
        assert missing.status_code == 404 and "does not exist" in missing.json()["message"], (ref, missing.text)
    assert owner_api.get("/api/v2/templates/starter/versions/v1").status_code == 200


@pytest.mark.security(finding=5)
def test_a_last_event_id_that_is_no_log_id_is_refused_by_the_gateway(owner_api: Api) -> None:
    version = push(owner_api, MINIMAL, "starter")
    path = f"/api/v2/templateversions/{version['id']}/logs?follow=true"
    for last in ("\xb2", "99999999999999999999", "-1"):
        _refused(owner_api.get(path, headers={"Last-Event-ID": last}), "Last-Event-ID")
    refused = owner_api.get(path + "&after=%00")
    assert refused.status_code == 400 and "U+0000" in refused.json()["message"], refused.text
