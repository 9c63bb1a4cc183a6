"""The real Distribution registry trusting the real control plane's tokens: pulls, pushes and refusals over HTTP.

A client here does what docker and podman do: meet the registry's challenge, follow its realm to the
control plane with Basic credentials, and come back with the Bearer token it got.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.pki.layout import PkiLayout
from appliance.registry.config import RegistrySettings, write_registry_config
from appliance.registry.process import RegistryError, RegistryProcess
from appliance.registry.tokens import challenge
from tests.support.api import DEFAULT_PASSWORD, Api
from tests.support.postgres import create_database, drop_database, free_port
from tests.support.server import LiveServer, live_server

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Site:
    control: LiveServer
    registry: str
    owner: Api


@pytest.fixture(scope="module")
def site(admin_conninfo: str, template_db: str, site_pki: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    conninfo = create_database(admin_conninfo, "registry_auth", template=template_db)
    work = tmp_path_factory.mktemp("registry")
    port = free_port()
    with live_server(conninfo, pki_dir=site_pki) as control:
        settings = RegistrySettings(work / "storage", f"127.0.0.1:{port}", control.config.access_url,
                                    PkiLayout(site_pki).root_cert)
        registry = RegistryProcess(write_registry_config(settings, work / "config.yml"), work / "registry.log",
                                   "127.0.0.1", port)
        registry.start()
        try:
            api = Api(control.url)
            api.create_first_user("owner")
            yield Site(control, registry.url, api.as_user(api.login("owner")))
        finally:
            registry.stop()
    drop_database(admin_conninfo, "registry_auth")


def _token(site: Site, login: str, scope: str) -> str:
    """Follow the registry's own challenge to the control plane, as a registry client does."""
    header = requests.get(site.registry + "/v2/", timeout=10).headers["WWW-Authenticate"]
    realm, service = re.fullmatch(r'Bearer realm="([^"]+)",service="([^"]+)"', header).groups()  # type: ignore[union-attr]
    answer = requests.get(realm, params={"service": service, "scope": scope}, auth=(login, DEFAULT_PASSWORD),
                          timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(site: Site, repo: str, token: str, data: bytes) -> requests.Response:
    started = requests.post(f"{site.registry}/v2/{repo}/blobs/uploads/", headers=_bearer(token), timeout=10)
    if started.status_code != 202:
        return started
    return requests.put(started.headers["Location"], params={"digest": _digest(data)}, data=data,
                        headers={**_bearer(token), "Content-Type": "application/octet-stream"}, timeout=10)


def _push_image(site: Site, repo: str, token: str, tag: str = "v1") -> str:
    """A one-layer OCI image (a config blob, a layer blob, a manifest); returns the manifest digest."""
    config, layer = json.dumps({"architecture": "amd64", "os": "linux"}).encode(), repo.encode() * 64
    for blob in (config, layer):
        assert _push_blob(site, repo, token, blob).status_code == 201
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _digest(layer),
                    "size": len(layer)}],
    }).encode()
    put = requests.put(f"{site.registry}/v2/{repo}/manifests/{tag}", data=manifest,
                       headers={**_bearer(token), "Content-Type": OCI_MANIFEST}, timeout=10)
    assert put.status_code == 201, put.text
    return _digest(manifest)


def _get_manifest(site: Site, repo: str, token: str, tag: str = "v1") -> requests.Response:
    return requests.get(f"{site.registry}/v2/{repo}/manifests/{tag}",
                        headers={**_bearer(token), "Accept": OCI_MANIFEST}, timeout=10)


def test_anonymous_gets_401_and_the_challenge_names_the_control_planes_token_url(site: Site) -> None:
    for path in ("/v2/", "/v2/team/app/manifests/v1", "/v2/_catalog"):
        response = requests.get(site.registry + path, timeout=10)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith(challenge(site.control.config.access_url))


def test_a_template_admin_pushes_and_a_member_pulls_but_cannot_push(site: Site) -> None:
    admin = site.owner.create_user(roles=["template-admin"])["username"]
    member = site.owner.create_user()["username"]
    digest = _push_image(site, "team/app", _token(site, admin, "repository:team/app:pull,push"))

    pulling = _token(site, member, "repository:team/app:pull,push")  # asks for push, gets pull only
    pulled = _get_manifest(site, "team/app", pulling)
    assert pulled.status_code == 200 and pulled.headers["Docker-Content-Digest"] == digest
    refused = _push_blob(site, "team/app", pulling, b"not allowed")
    assert refused.status_code in (401, 403), refused.text
    assert "insufficient_scope" in refused.headers.get("WWW-Authenticate", "")


def test_a_token_for_one_repository_cannot_read_another(site: Site) -> None:
    admin = site.owner.create_user(roles=["template-admin"])["username"]
    _push_image(site, "team/other", _token(site, admin, "repository:team/other:pull,push"))
    for_app = _token(site, admin, "repository:team/app:pull,push")
    assert _get_manifest(site, "team/other", for_app).status_code == 401
    assert _push_blob(site, "team/other", for_app, b"elsewhere").status_code == 401


def test_a_token_signed_by_a_key_the_ca_never_certified_is_refused(site: Site) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "registry-token")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    forged = jwt.encode({"iss": "appliance", "sub": "owner", "aud": "appliance-registry", "jti": "x",
                         "iat": int(now.timestamp()), "nbf": int(now.timestamp()),
                         "exp": int(now.timestamp()) + 300,
                         "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}]},
                        key, algorithm="ES256",
                        headers={"x5c": [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]})
    assert _get_manifest(site, "team/app", forged).status_code == 401


def test_a_missing_registry_executable_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    registry = RegistryProcess(tmp_path / "config.yml", tmp_path / "registry.log", "127.0.0.1", free_port())
    with pytest.raises(RegistryError) as caught:
        registry.start()
    assert "not installed" in caught.value.message and "apt-get install docker-registry" in caught.value.hint
