"""`appliance-installer support-bundle`'s collection on an installed tree (a scratch root, the real `appliance`
of this checkout as its release, a real PostgreSQL role): what it holds, and no secret of the host in any form."""

from __future__ import annotations

import json
import secrets
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from appliance.db.embedded import EmbeddedPostgres
from appliance.db.migrate import apply_migrations
from appliance.sdk.health import HealthReport
from bundles.support import UNAVAILABLE, check_manifest
from installer.paths import HostPaths
from installer.support_bundle import collect, journal_units
from operator_errors.redaction import encodings
from tests.support.postgres import drop_database

pytestmark = pytest.mark.integration
ROLE = "support_host"


@pytest.fixture
def host(pg_cluster: EmbeddedPostgres, tmp_path: Path) -> Iterator[tuple[HostPaths, dict[str, str]]]:
    """An installed tree whose secrets (files, appliance.toml, the registry's config) are made now."""
    admin = pg_cluster.conninfo("postgres")
    password = secrets.token_urlsafe(18) + "/+"  # URL-encoded in postgres_url, as the base role writes it
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(ROLE), sql.Identifier(ROLE)))
    apply_migrations(make_conninfo(admin, user=ROLE, password=password, dbname=ROLE))
    planted = {"database password": password, "provisioner psk": secrets.token_urlsafe(32),
               "CA key passphrase": secrets.token_urlsafe(32), "registry secret": secrets.token_urlsafe(32)}
    paths = HostPaths(root=tmp_path / "host")
    release = paths.release("1.0.0")
    release.mkdir(parents=True)
    (release / "venv").symlink_to(Path(sys.prefix))  # this checkout's `appliance`
    paths.current.symlink_to(release.relative_to(paths.opt))
    paths.secrets.mkdir(parents=True, mode=0o700)
    for name, key in (("postgres-password", "database password"), ("provisioner-psk", "provisioner psk"),
                      ("pki-passphrase", "CA key passphrase")):
        (paths.secrets / name).write_text(planted[key] + "\n")
    server = pg_cluster.conninfo("postgres")
    host_part = dict(p.split("=", 1) for p in server.split())["host"]
    paths.config.write_text(
        f'postgres_url = "postgresql://{ROLE}:{quote(password, safe="")}@/{ROLE}?host={host_part}'
        f'&port={pg_cluster.port}"\nprovisioner_psk = "{planted["provisioner psk"]}"\nlog_format = "json"\n'
        f'data_dir = "{paths.state}"\n')
    (paths.state / "registry").mkdir(parents=True)
    (paths.state / "registry/config.yml").write_text(f"http:\n  addr: 127.0.0.1:3002\n  secret: "
                                                     f"{planted['registry secret']}\n")
    paths.logs.mkdir(parents=True)
    paths.log.write_text("".join(f"TASK [line {i}] ok\n" for i in range(200_000)) +
                         f"fatal: psql: password authentication failed, PGPASSWORD={password}\n")
    paths.receipts.mkdir(parents=True)
    (paths.receipts / "install-1.0.0.json").write_text(json.dumps({"version": "1.0.0", "signers": ["release"]}))
    paths.journal.write_text(json.dumps({"kind": "upgrade", "outcome": "succeeded",
                                         "error": f"psql failed: password={password}"}))
    yield paths, planted
    drop_database(admin, ROLE)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


def test_the_host_bundle_holds_versions_receipts_config_journals_health_and_facts(
        host: tuple[HostPaths, dict[str, str]], tmp_path: Path) -> None:
    paths, _ = host
    written = collect(paths, journal_mb=1).write(tmp_path / "host.zip")
    names = check_manifest(written)
    assert {"versions.json", "receipts/install-1.0.0.json", "upgrade-journal.json", "appliance.toml", "health.json",
            "facts.json", *(f"journal/{unit}.log" for unit in journal_units())} <= set(names), names
    with zipfile.ZipFile(written) as archive:
        assert json.loads(archive.read("versions.json"))["installed"] == "1.0.0"
        facts = json.loads(archive.read("facts.json"))
        assert facts["disk"]["data"]["free_bytes"] > 0 and facts["memory_kb"]["MemTotal"] > 0
        health = archive.read("health.json").decode()
        config = archive.read("appliance.toml").decode()
        installer_log = archive.read("installer.log")
    assert installer_log.startswith(b"TASK [line ") and len(installer_log) <= 1_000_000  # the newest 1 MB, whole lines
    assert installer_log.endswith(b"PGPASSWORD=[REDACTED]\n")
    # `appliance health --local` of the release answers with a report, or its failure is recorded in its place.
    assert health.startswith(f"{UNAVAILABLE}appliance health --local exited") or \
        HealthReport.model_validate_json(health).database.severity == "ok"
    assert 'provisioner_psk = "[REDACTED]"' in config and 'log_format = "json"' in config


def test_no_secret_of_the_host_appears_in_any_form(host: tuple[HostPaths, dict[str, str]], tmp_path: Path) -> None:
    paths, planted = host
    with zipfile.ZipFile(collect(paths, journal_mb=1).write(tmp_path / "host.zip")) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    for what, value in planted.items():
        for form in encodings(value):
            leaks = [name for name, data in files.items() if form.encode() in data]
            assert not leaks, f"the {what} appears ({form[:6]}...) in {leaks}"
