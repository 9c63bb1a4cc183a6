"""The console's Upgrade page over real HTTP: upload a real signed bundle, verify it in the gateway, apply it."""

from __future__ import annotations

import html
import io
import json
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bundles.tarball import read_head
from tests.support.api import _CSRF, Api, console_session
from tests.support.postgres import truncate_all
from tests.support.server import LiveServer
from tests.support.upgrades import VERSION, SignedBundle, signed_bundle, upgrade_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> SignedBundle:
    return signed_bundle(tmp_path_factory.mktemp("console-bundle"))


@pytest.fixture(scope="module")
def site(shared_conninfo: str, site_pki: Path, bundle: SignedBundle,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("upgrade-site")
    with upgrade_server(shared_conninfo, site_pki, bundle, folder, upgrade_max_bundle_mb=1) as live:
        yield live


@pytest.fixture
def owner(site: LiveServer, shared_conninfo: str) -> requests.Session:
    truncate_all(shared_conninfo)
    for left in site.config.upgrade_spool_dir.glob("*"):  # an earlier test's upload or request
        left.unlink()
    Api(site.url).create_first_user("owner")
    return console_session(site.url, "owner")


def spool(server: LiveServer) -> list[str]:
    return sorted(p.name for p in server.config.upgrade_spool_dir.iterdir())


def upload(server: LiveServer, browser: requests.Session, name: str, body: bytes) -> requests.Response:
    token = _CSRF.search(browser.get(server.url + "/admin/upgrade", timeout=10).text)
    assert token
    return browser.post(server.url + "/admin/upgrade", data={"csrf_token": token.group(1)},
                        files={"bundle": (name, io.BytesIO(body))}, allow_redirects=False, timeout=30)


def events(browser: requests.Session, url: str, last: tuple[str, ...]) -> list[tuple[str, dict[str, object]]]:
    """The stream's events up to the first one named in `last`."""
    seen: list[tuple[str, dict[str, object]]] = []
    with browser.get(url, stream=True, timeout=30) as response:
        assert response.status_code == 200, response.text
        name = ""
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((name, json.loads(line.removeprefix("data: "))))
                if name in last:
                    return seen
    raise AssertionError(f"the stream ended without {last}: {seen}")


def verify(server: LiveServer, browser: requests.Session, upload_id: str) -> tuple[str, dict[str, object]]:
    return events(browser, f"{server.url}/admin/upgrade/{upload_id}/verification", ("verified", "rejected"))[-1]


def uploaded_id(response: requests.Response) -> str:
    assert response.status_code == 303, response.text
    found = re.fullmatch(r".*/admin/upgrade/([0-9a-f]{16})", response.headers["Location"])
    assert found
    return found.group(1)


def test_an_owner_uploads_sees_the_verification_and_plan_and_applies(
        site: LiveServer, owner: requests.Session, bundle: SignedBundle) -> None:
    upload_id = uploaded_id(upload(site, owner, "appliance.bundle", bundle.path.read_bytes()))
    assert f"{upload_id}.bundle" in spool(site)
    page = owner.get(f"{site.url}/admin/upgrade/{upload_id}", timeout=10).text
    assert 'data-verify-stream="/admin/upgrade/' in page and "upgrade.js" in page
    name, report = verify(site, owner, upload_id)
    assert name == "verified", report
    manifest_sha256 = report["manifest_sha256"]
    page = owner.get(f"{site.url}/admin/upgrade/{upload_id}", timeout=10).text
    assert f'id="bundle-version">{VERSION}<' in page and manifest_sha256 in page
    assert bundle.key.fingerprint in page and "Release console" in page
    assert "<code>000099_console_upgrade_test</code>" in page and "000001_core" not in page
    assert 'href="/admin/upgrade"' in page  # in the navigation
    token = _CSRF.search(page)
    assert token
    applied = owner.post(f"{site.url}/admin/upgrade/{upload_id}/apply", timeout=10,
                         data={"csrf_token": token.group(1), "manifest_sha256": manifest_sha256})
    assert applied.status_code == 200 and "Upgrade requested" in applied.text
    request = json.loads((site.config.upgrade_spool_dir / "apply.json").read_text())
    assert request["bundle"] == f"{upload_id}.bundle" and request["manifest_sha256"] == manifest_sha256
    assert request["actor"] == "owner" and request["requested_at"]
    # The progress stream names the request until the root unit takes it.
    name, state = events(owner, f"{site.url}/admin/upgrade/progress", ("progress",))[-1]
    assert state["request"] == request and state["journal"] is None
    again = owner.post(f"{site.url}/admin/upgrade/{upload_id}/apply", timeout=10,
                       data={"csrf_token": token.group(1), "manifest_sha256": manifest_sha256})
    assert "already requested" in again.text


def _tampered(bundle: Path) -> bytes:
    """The signed bundle with one payload byte changed, past the manifest and signatures."""
    data = bytearray(bundle.read_bytes())
    _, _, manifest = read_head(bundle)
    payload = data.index(b"fake terraform", manifest.offset_data)
    data[payload] ^= 1
    return bytes(data)


def _other_product(bundle: Path) -> bytes:
    manifest = json.loads(read_head(bundle)[0])
    body = json.dumps({**manifest, "product": "other"}).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def test_a_tampered_bundle_is_refused_by_the_verification_and_leaves_nothing(
        site: LiveServer, owner: requests.Session, bundle: SignedBundle) -> None:
    upload_id = uploaded_id(upload(site, owner, "appliance.bundle", _tampered(bundle.path)))
    name, refusal = verify(site, owner, upload_id)
    assert name == "rejected" and "hash-mismatch" in str(refusal["message"]) and refusal["hint"]
    assert spool(site) == []


@pytest.mark.parametrize(("make", "expected"), [
    (lambda _: b"not a tar archive at all" * 100, "not an appliance bundle"),
    (_other_product, "product 'other' is not 'appliance'"),
])
def test_what_is_plainly_not_a_bundle_is_refused_at_upload(site: LiveServer, owner: requests.Session,
                                                          bundle: SignedBundle, make: object, expected: str) -> None:
    refused = upload(site, owner, "x.bundle", make(bundle.path))  # type: ignore[operator]
    assert refused.status_code == 400 and expected in html.unescape(refused.text)
    assert spool(site) == []


def test_a_bundle_over_the_cap_is_refused_with_the_limit_and_leaves_nothing(
        site: LiveServer, owner: requests.Session) -> None:
    refused = upload(site, owner, "big.bundle", b"\0" * (2 << 20))
    assert refused.status_code == 413 and "larger than 1 MiB" in refused.text
    assert "upgrade_max_bundle_mb" in refused.text
    assert spool(site) == []


def test_members_get_no_upgrade_page_stream_or_upload(site: LiveServer, owner: requests.Session,
                                                      bundle: SignedBundle) -> None:
    api = Api(site.url)
    api.as_user(api.login("owner")).create_user(username="dev")
    member = console_session(site.url, "dev")
    assert member.get(site.url + "/admin/upgrade", timeout=10).status_code == 403
    assert 'href="/admin/upgrade"' not in member.get(site.url + "/", timeout=10).text
    assert member.get(site.url + "/admin/upgrade/progress", timeout=10).status_code == 403
    token = _CSRF.search(member.get(site.url + "/", timeout=10).text)
    assert token
    refused = member.post(site.url + "/admin/upgrade", data={"csrf_token": token.group(1)},
                          files={"bundle": ("b.bundle", io.BytesIO(bundle.path.read_bytes()))}, timeout=30)
    assert refused.status_code == 403 and spool(site) == []
