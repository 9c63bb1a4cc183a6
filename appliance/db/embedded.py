"""The embedded PostgreSQL cluster that `appliance server` runs when no --postgres-url is given.

Layout under DATA_DIR/postgres: data/ (PGDATA, made once by initdb), run/ (the unix socket),
password (the superuser password, readable only by the server's user), postgres.log.

postgres is started directly as a child process rather than through pg_ctl, with the kernel's
parent-death signal set to SIGINT (fast shutdown): if the server is killed, even with SIGKILL,
the cluster shuts down cleanly instead of lingering. As root it runs as the 'postgres' user,
because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import secrets
import signal
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psycopg
from psycopg.conninfo import make_conninfo

from appliance.children import die_with_parent
from appliance.errors import OperatorError

log = logging.getLogger(__name__)

SUPERUSER = "appliance"
DATABASE = "appliance"
SOCKET_PORT = 5432
_UNIX_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for the terminating byte
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 30.0


class EmbeddedPostgresError(OperatorError):
    """The embedded cluster could not be created, started or stopped."""


def find_postgres_bin(preferred: str = "15") -> Path:
    root = Path("/usr/lib/postgresql")
    candidates = sorted(
        (p for p in root.glob("*/bin") if (p / "postgres").is_file() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    )
    for candidate in candidates:
        if candidate.parent.name == preferred:
            return candidate
    usable = [c for c in candidates if int(c.parent.name) >= int(preferred)]
    if usable:
        return usable[-1]
    raise EmbeddedPostgresError(
        f"PostgreSQL {preferred} server binaries were not found under {root}.",
        "Install them with 'apt-get install postgresql-15', or pass --postgres-url "
        "to use an existing server.",
    )


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str

    @classmethod
    def for_current_process(cls) -> RunAs:
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError as err:
            raise EmbeddedPostgresError(
                "Embedded PostgreSQL must run as an unprivileged user, and user 'postgres' does not exist.",
                "Install postgresql-15 (it creates that user), or pass --postgres-url.",
            ) from err
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)

    @property
    def is_other_user(self) -> bool:
        return self.uid != os.geteuid()


def _blocking_ancestor(path: Path, user: RunAs) -> Path | None:
    """The first existing ancestor of path that `user` may not traverse, if any."""
    groups = {user.gid, *(g.gr_gid for g in _groups_of(user.name))}
    for ancestor in reversed(path.resolve().parents):
        info = ancestor.stat()
        if info.st_uid == user.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return ancestor
    return None


def _groups_of(username: str) -> list[grp.struct_group]:
    return [g for g in grp.getgrall() if username in g.gr_mem]


@dataclass
class EmbeddedPostgres:
    root: Path
    tcp_port: int | None = None
    bin_dir: Path = field(default_factory=find_postgres_bin)
    user: RunAs = field(default_factory=RunAs.for_current_process)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def uses_socket(self) -> bool:
        """Whether the socket path fits the kernel's limit; if not, fall back to loopback TCP."""
        longest = self.socket_dir / ".s.PGSQL.65535"
        return len(str(longest)) <= _UNIX_SOCKET_PATH_MAX

    @property
    def port(self) -> int:
        if self.tcp_port is not None:
            return self.tcp_port
        if self.uses_socket:
            return SOCKET_PORT  # only names the socket file; nothing listens on TCP
        port_file = self.root / "port"
        if not port_file.exists():
            port_file.write_text(f"{_free_port()}\n")
        return int(port_file.read_text())

    def conninfo(self, dbname: str = DATABASE) -> str:
        password = self.password_file.read_text().strip()
        host = str(self.socket_dir) if self.uses_socket else "127.0.0.1"
        return make_conninfo(host=host, port=self.port, user=SUPERUSER, password=password,
                             dbname=dbname)

    def start(self) -> str:
        """Create the cluster if needed, start it, and return a conninfo for its database."""
        self._prepare_directories()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._check_version()
        self._refuse_if_already_running()
        self._launch()
        self._wait_until_ready()
        self._ensure_database()
        log.info("embedded_postgres_started", extra={"pgdata": str(self.data_dir), "pid": self.pid})
        return self.conninfo()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)  # fast shutdown: roll back open transactions, checkpoint
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGQUIT)
            process.wait(10)
        log.info("embedded_postgres_stopped", extra={"pgdata": str(self.data_dir)})

    def _prepare_directories(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        if self.user.is_other_user:
            blocked = _blocking_ancestor(self.root, self.user)
            if blocked is not None:
                raise EmbeddedPostgresError(
                    f"PostgreSQL runs as user '{self.user.name}', which cannot enter {blocked} "
                    f"(mode {stat.filemode(blocked.stat().st_mode)}).",
                    "Use a --data-dir outside that folder (the default when root is "
                    "/var/lib/appliance), or pass --postgres-url.",
                )
        for folder in (self.data_dir, self.socket_dir):
            folder.mkdir(exist_ok=True, mode=0o700)
            os.chown(folder, self.user.uid, self.user.gid)
        # Traverse-only for others: the postgres user must reach data/ and run/ below it.
        self.root.chmod(0o711)
        if not self.password_file.exists():
            _write_private(self.password_file, secrets.token_urlsafe(32))

    def _run_as(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(argv, **self._identity(), check=False, capture_output=True, **kwargs)  # type: ignore[call-overload, no-any-return]

    def _identity(self) -> dict[str, object]:
        identity: dict[str, object] = {"preexec_fn": die_with_parent(signal.SIGINT), "cwd": str(self.root)}
        if self.user.is_other_user:
            identity.update(user=self.user.uid, group=self.user.gid, extra_groups=[])
        return identity

    def _initdb(self) -> None:
        pwfile = self.socket_dir / "initdb.pw"
        _write_private(pwfile, self.password_file.read_text().strip())
        os.chown(pwfile, self.user.uid, self.user.gid)
        try:
            result = self._run_as([
                str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-instructions",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {self.data_dir}: {_tail(result.stderr.decode(errors='replace'))}",
                "Check free disk space and permissions on the data dir, then start again.",
            )
        log.info("embedded_postgres_initialised", extra={"pgdata": str(self.data_dir)})

    def _check_version(self) -> None:
        cluster = (self.data_dir / "PG_VERSION").read_text().strip()
        if cluster != self.bin_dir.parent.name:
            raise EmbeddedPostgresError(
                f"The embedded cluster in {self.data_dir} was made by PostgreSQL {cluster}, "
                f"but the binaries found are version {self.bin_dir.parent.name}.",
                f"Install postgresql-{cluster}, or move the data dir aside to start fresh.",
            )

    def is_running(self) -> bool:
        """True while a PostgreSQL (this process's or a server's) runs on this data dir."""
        return self._postmaster_pid() is not None

    def _postmaster_pid(self) -> int | None:
        """The PID recorded in postmaster.pid when that process is alive, else None."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, 0)
        except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return pid

    def _refuse_if_already_running(self) -> None:
        pid = self._postmaster_pid()
        if pid is not None:
            raise EmbeddedPostgresError(
                f"The embedded PostgreSQL in {self.data_dir} is already running (PID {pid}).",
                "Another appliance server is using this data dir. Stop it, or choose another --data-dir.",
            )

    def _launch(self) -> None:
        listens_on_tcp = self.tcp_port is not None or not self.uses_socket
        settings = {
            "listen_addresses": "127.0.0.1" if listens_on_tcp else "",
            "unix_socket_directories": str(self.socket_dir) if self.uses_socket else "",
            "unix_socket_permissions": "0700",
            "port": str(self.port),
            "max_connections": "100",
            "shared_buffers": "128MB",
            "logging_collector": "off",
        }
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        log_handle = _open_log(self.log_file, self.user)
        with log_handle:
            self._process = subprocess.Popen(  # type: ignore[call-overload]
                argv, stdin=subprocess.DEVNULL, stdout=log_handle, stderr=log_handle,
                **self._identity(),
            )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                self._process = None
                raise EmbeddedPostgresError(self._failure_reason(), self._failure_hint())
            try:
                with psycopg.connect(self.conninfo("postgres"), connect_timeout=2):
                    pass
            except psycopg.OperationalError:
                time.sleep(0.1)
                continue
            # Answering is not enough: it must be our postmaster, not one that beat us to the lock.
            if self._postmaster_pid() == self._process.pid:
                return
            time.sleep(0.1)
        self.stop()
        raise EmbeddedPostgresError(
            f"Embedded PostgreSQL did not accept connections within {_START_TIMEOUT:.0f}s.",
            f"Read {self.log_file} for the reason.",
        )

    def _failure_reason(self) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        return f"Embedded PostgreSQL exited during start: {_tail(text)}"

    def _failure_hint(self) -> str:
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        if "postmaster.pid" in text and "already exists" in text:
            return ("Another appliance server is using this data dir. Stop it, or choose "
                    "another --data-dir.")
        return f"The full log is in {self.log_file}."

    def _ensure_database(self) -> None:
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
            if not found:
                conn.execute(f'CREATE DATABASE "{DATABASE}"'.encode())


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def _open_log(path: Path, user: RunAs) -> BinaryIO:
    handle = path.open("ab")
    if user.is_other_user:
        os.chown(path, user.uid, user.gid)
    return handle


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(no output)"


def _free_port() -> int:
    import socket  # local: only the TCP fallback needs it

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
