"""Integration fixtures: one real PostgreSQL cluster per session, databases made from a migrated template."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations
from appliance.pki.ca import CertificateAuthority
from appliance.registry.tokens import ensure_signing_certificate
from tests.support.api import Api
from tests.support.conformance import answers_match_their_models  # noqa: F401  (autouse fixture)
from tests.support.postgres import create_database, drop_database, running_cluster, truncate_all
from tests.support.server import LiveServer, live_server

_names = itertools.count(1)
TEMPLATE_DB = "appliance_template"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def admin_conninfo(pg_cluster: EmbeddedPostgres) -> str:
    return pg_cluster.conninfo("postgres")


@pytest.fixture(scope="session")
def template_db(admin_conninfo: str) -> str:
    conninfo = create_database(admin_conninfo, TEMPLATE_DB)
    apply_migrations(conninfo)
    return TEMPLATE_DB


@pytest.fixture
def empty_db(admin_conninfo: str) -> Iterator[str]:
    """A brand-new database with no schema at all."""
    name = f"empty_{next(_names)}"
    yield create_database(admin_conninfo, name)
    drop_database(admin_conninfo, name)


@pytest.fixture
def fresh_db(admin_conninfo: str, template_db: str) -> Iterator[str]:
    """A migrated database of this test's own."""
    name = f"test_{next(_names)}"
    yield create_database(admin_conninfo, name, template=template_db)
    drop_database(admin_conninfo, name)


@pytest.fixture(scope="session")
def shared_conninfo(admin_conninfo: str, template_db: str) -> str:
    return create_database(admin_conninfo, "appliance_shared", template=template_db)


@pytest.fixture(scope="session")
def site_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised internal CA for the shared server, as `appliance server` would create."""
    root = tmp_path_factory.mktemp("site") / "pki"
    ca = CertificateAuthority(root)
    ca.init(b"integration-test-passphrase")
    ensure_signing_certificate(ca)
    return root


@pytest.fixture(scope="session")
def server(shared_conninfo: str, site_pki: Path) -> Iterator[LiveServer]:
    with live_server(shared_conninfo, pki_dir=site_pki) as live:
        yield live


@pytest.fixture
def api(server: LiveServer, shared_conninfo: str) -> Api:
    """An anonymous client of the shared server, whose database starts empty for each test."""
    truncate_all(shared_conninfo)
    return Api(server.url)


@pytest.fixture
def owner_api(api: Api) -> Api:
    """A client logged in as the first user (Owner) by Bearer token."""
    api.create_first_user("owner")
    return api.as_user(api.login("owner"))


@pytest.fixture(scope="session")
def appliance_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mirror tree (mirror/ and registry/ inside) holding the real appliance provider, PyInstaller-built and
    cached under .cache/provider. Terraform installs it with `filesystem_mirror { path = "<tree>/mirror" }`."""
    from tests.support.appliance_provider import appliance_mirror_tree

    return appliance_mirror_tree(tmp_path_factory.mktemp("appliance-mirror") / "tree")

