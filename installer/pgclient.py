"""The appliance's database as the installer reaches it: PostgreSQL's own client tools, as the appliance's role.

The connection is appliance.toml's postgres_url (written by the base role: the appliance role,
scram over the local socket). It is handed to psql, pg_dump and pg_restore as PG* environment
variables, never as an argument, so the password is not on any command line (`ps` shows those).
"""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from installer.errors import InstallError
from installer.paths import HostPaths

# libpq URL query parameters the installer passes on, and their environment variable.
_QUERY_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
              "dbname": "PGDATABASE", "sslmode": "PGSSLMODE", "connect_timeout": "PGCONNECT_TIMEOUT"}


@dataclass(frozen=True)
class Database:
    """libpq environment for the appliance database (holds the password: never log it)."""

    env: dict[str, str]

    @property
    def name(self) -> str:
        return self.env.get("PGDATABASE", "appliance")

    @classmethod
    def from_config(cls, paths: HostPaths, *, step: str) -> Database:
        try:
            with paths.config.open("rb") as handle:
                url = tomllib.load(handle).get("postgres_url", "")
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise InstallError(f"cannot read postgres_url from {paths.config}: {err}.",
                               "Is the appliance installed? Check: appliance-installer status", step=step) from err
        if not isinstance(url, str) or not url.startswith(("postgres://", "postgresql://")):
            raise InstallError(f"{paths.config} has no postgres_url (the value is not shown).",
                               "Run the install command again to rewrite it.", step=step)
        return cls(_libpq_env(url))

    def run(self, argv: list[str], *, step: str, stdin: bytes | None = None) -> bytes:
        """stdout of a PostgreSQL client tool; InstallError with its last stderr lines when it fails."""
        try:
            result = subprocess.run(argv, input=stdin, capture_output=True, check=False, env=self.client_env())
        except OSError as err:
            raise InstallError(f"cannot run {argv[0]}: {err.strerror}.",
                               "Install PostgreSQL's client tools (the postgresql-15 package).", step=step) from err
        if result.returncode != 0:
            raise client_error(argv[0], result.stderr, step)
        return result.stdout

    def scalar(self, sql: str, *, step: str) -> str:
        return self.run(["psql", "-XqAt", "-v", "ON_ERROR_STOP=1", "-c", sql], step=step).decode().strip()

    def client_env(self) -> dict[str, str]:
        # Only what the tools need: no inherited PG* variable may point them at another database.
        return {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LC_ALL": "C.UTF-8", "PGCONNECT_TIMEOUT": "10", **self.env}


def client_error(tool: str, stderr: bytes, step: str,
                 hint: str = "Check that PostgreSQL runs: systemctl status postgresql@15-main.") -> InstallError:
    said = stderr.decode(errors="replace").strip()[-600:]
    if "No space left on device" in said:
        return InstallError(f"{tool}: the disk is full: {said}", "Free space and run the command again.", step=step)
    return InstallError(f"{tool} failed: {said}", hint, step=step)


def _libpq_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    env = {"PGUSER": unquote(parts.username or ""), "PGPASSWORD": unquote(parts.password or ""),
           "PGHOST": unquote(parts.hostname or ""), "PGPORT": str(parts.port or ""),
           "PGDATABASE": unquote(parts.path.lstrip("/"))}
    for key, values in parse_qs(parts.query).items():
        if key in _QUERY_ENV and values:
            env[_QUERY_ENV[key]] = values[-1]
    return {name: value for name, value in env.items() if value}

