"""A throwaway PostgreSQL 15 cluster in a temp dir on a free loopback port (the real server)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from appliance.db.embedded import EmbeddedPostgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def traversable_temp_dir(prefix: str) -> Path:
    """A temp dir the 'postgres' user can enter when tests run as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@contextmanager
def running_cluster() -> Iterator[EmbeddedPostgres]:
    root = traversable_temp_dir("appliance-pg-")
    cluster = EmbeddedPostgres(root / "postgres", tcp_port=free_port())
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def with_dbname(conninfo: str, dbname: str) -> str:
    return make_conninfo(conninfo, dbname=dbname)


def create_database(admin_conninfo: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.execute(query)
    return with_dbname(admin_conninfo, name)


def drop_database(admin_conninfo: str, name: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def conninfo_url(conninfo: str) -> str:
    """The same connection as a postgresql:// URL (what --postgres-url takes).

    The host goes in the query string, because a unix-socket directory cannot be a URL host.
    """
    parts = conninfo_to_dict(conninfo)
    query = urlencode({"host": parts["host"], "port": parts["port"]})
    return f"postgresql://{quote(str(parts['user']))}:{quote(str(parts['password']))}@/{parts['dbname']}?{query}"


def postgres_processes_for(data_dir: Path) -> list[int]:
    """PIDs of postgres processes whose command line names data_dir."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"postgres") and str(data_dir).encode() in b" ".join(cmdline):
            pids.append(int(entry.name))
    return pids



APP_TABLES = ("users, api_keys, login_failures, audit_logs, setup_tokens, files, templates, template_versions,"
              " provisioner_jobs, provisioner_job_logs, provisioner_daemons, workspaces, workspace_builds, relay_stats,"
              " release_history")


def truncate_all(conninfo: str) -> None:
    """Empty every table the app writes, keeping the schema and site secrets."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {APP_TABLES} RESTART IDENTITY CASCADE")
        conn.execute("UPDATE maintenance SET active = false, reason = NULL, since = NULL")
