"""The server's one frozen configuration, merged from defaults, appliance.toml, APPLIANCE_* and flags."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.errors import ConfigError

SYSTEM_CONFIG_FILE = Path("/etc/appliance/appliance.toml")
ENV_PREFIX = "APPLIANCE_"
_DURATION = re.compile(r"\s*(\d+)\s*([smhd])\s*", re.ASCII)  # fullmatch; ASCII digits only
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_SECONDS = 100 * 366 * 86400  # a century: past any lifetime, well inside timedelta and bigint


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServerConfig:
    http_address: Address
    access_url: str
    postgres_url: str | None
    data_dir: Path
    log_format: str
    log_level: str
    proxy_trusted_hops: int
    session_lifetime: timedelta
    max_token_lifetime: timedelta
    tls_address: Address | None
    pki_dir: Path
    mirror_dir: Path
    cert_renew_within: timedelta
    first_user_requires_setup_token: bool
    provisioner_daemons: int
    provisioner_psk: str
    provisioner_job_timeout: timedelta
    provisioner_heartbeat_timeout: timedelta
    provisioner_dir: Path
    provider_cache_dir: Path
    # The internal container registry (docs/adr/0017): where it listens (its own port, TLS), where it stores.
    registry_address: Address
    registry_dir: Path
    # False when the registry runs as its own unit (the installed appliance); True: a child of `appliance server`.
    registry_embedded: bool
    # The runtime service that owns podman: its socket, and whether `appliance server` runs it itself.
    runtime_socket: Path
    runtime_embedded: bool
    # Whether the runtime service forwards the access URL's port from the podman gateway (docs/adr/0019).
    # False when a front already listens there on every address (the installed nginx): it would take the port.
    runtime_forwarder: bool
    # Embedded only: build the workspace base image once per machine and import it into the registry at start.
    base_image_auto: bool
    # Where GET /bin/appliance-agent-linux-amd64 serves the agent executable from (embedded: built there at start).
    agent_binary_dir: Path
    config_file: Path | None
    # The runtime policy's maxima for one container (rule limits-required); None: the host's CPUs and memory.
    runtime_max_cpus: float | None = None
    runtime_max_memory_mb: int | None = None
    # The relay's limits (docs/adr/0023): each client's receive token bucket (0: unlimited) and the accept rate.
    relay_rate_bytes_per_second: int = 0
    relay_rate_burst_bytes: int = 0
    relay_accept_per_second: float = 200.0
    relay_accept_burst: int = 1000
    # Console upgrades (docs/adr/0039): the spool uploaded bundles and the apply request land in, the most
    # an upload may hold, the release keys the console verifies with, the installer's journal it shows,
    # the running release (its SBOM, for the diff), and whether a root path unit applies requests.
    upgrade_spool_dir: Path = Path("/nonexistent/upgrade-requests")
    upgrade_max_bundle_mb: int = 2048
    trusted_keys_file: Path = Path("/etc/appliance/trusted-keys.pgp")
    upgrade_journal: Path = Path("/var/lib/appliance/installer/journal.json")
    release_dir: Path | None = None
    upgrade_path_unit: bool = False
    # Installed: the gateway's prometheus-client multiprocess folder, which the console's scrape adds to its
    # workers' (docs/adr/0042); None where one process serves both (`appliance server`).
    metrics_gateway_dir: Path | None = None

    @property
    def is_embedded_postgres(self) -> bool:
        return self.postgres_url is None


def parse_address(value: str) -> Address:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port from 1 to 65535, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return Address(host, int(port))


def parse_duration(value: str | int) -> timedelta:
    """Parse '90d', '24h', '30m', '45s' or a whole number of seconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        text = str(value)
        match = _DURATION.fullmatch(text)
        if match:
            seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
        elif text.strip().isascii() and text.strip().isdigit():
            seconds = int(text)
        else:
            raise ValueError(f"expected a duration such as 30d, 24h, 15m or 3600, got {value!r}")
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"a duration must be at most {MAX_DURATION_SECONDS // 86400}d, got {value!r}")
    return timedelta(seconds=seconds)


def _parse_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    return value.rstrip("/")


def _parse_postgres_url(value: str) -> str | None:
    if value == "":
        return None
    if not value.startswith(("postgres://", "postgresql://")):
        raise ValueError("expected a postgres:// or postgresql:// URL (the value is not shown)")
    return value


def _parse_log_format(value: str) -> str:
    if value not in ("text", "json"):
        raise ValueError(f"expected 'text' or 'json', got {value!r}")
    return value


def _parse_log_level(value: str) -> str:
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError(f"expected debug, info, warning or error, got {value!r}")
    return value


def _parse_bool(value: str | bool) -> bool:
    if isinstance(value, bool):
        return value
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_hops(value: str | int) -> int:
    hops = int(value)
    if hops < 0 or hops > 5:
        raise ValueError(f"expected a number of proxies from 0 to 5, got {value!r}")
    return hops


def _parse_daemons(value: str | int) -> int:
    count = int(value)
    if count < 0 or count > 16:
        raise ValueError(f"expected 0 to 16 in-process provisioner daemons, got {value!r}")
    return count


def _parse_psk(value: str) -> str:
    if value and len(value) < 32:
        raise ValueError("the provisioner pre-shared key must be at least 32 characters (the value is not shown)")
    return value


def _parse_max_cpus(value: str | float) -> float:
    cpus = float(value)
    if not 0 < cpus <= 1024:
        raise ValueError(f"expected a number of CPUs above 0 and at most 1024, got {value!r}")
    return cpus


def _parse_max_memory_mb(value: str | int) -> int:
    memory = int(value)
    if not 0 < memory <= 4 * 1024 * 1024:
        raise ValueError(f"expected MiB above 0 and at most 4194304, got {value!r}")
    return memory


def _parse_nonnegative_int(value: str | int) -> int:
    number = int(value)
    if not 0 <= number <= 1 << 40:
        raise ValueError(f"expected a whole number from 0 to 2^40, got {value!r}")
    return number


def _parse_bundle_mb(value: str | int) -> int:
    megabytes = int(value)
    if not 1 <= megabytes <= 1 << 20:
        raise ValueError(f"expected MiB from 1 to 1048576, got {value!r}")
    return megabytes


def _parse_rate(value: str | float) -> float:
    rate = float(value)
    if not 0 < rate <= 1_000_000:
        raise ValueError(f"expected connections per second above 0 and at most 1000000, got {value!r}")
    return rate


def default_provider_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "appliance" / "provider"


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/appliance")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "appliance"


@dataclass(frozen=True)
class _Key:
    parse: Callable[[Any], Any]
    default: Any
    secret: bool = False


_KEYS: dict[str, _Key] = {
    "http_address": _Key(parse_address, "127.0.0.1:3000"),
    "access_url": _Key(_parse_url, None),
    "postgres_url": _Key(_parse_postgres_url, "", secret=True),
    "data_dir": _Key(lambda v: Path(v).expanduser(), None),
    "log_format": _Key(_parse_log_format, "text"),
    "log_level": _Key(_parse_log_level, "info"),
    "proxy_trusted_hops": _Key(_parse_hops, 0),
    "session_lifetime": _Key(parse_duration, "24h"),
    "max_token_lifetime": _Key(parse_duration, "365d"),
    "tls_address": _Key(parse_address, None),
    "pki_dir": _Key(lambda v: Path(v).expanduser(), None),
    "mirror_dir": _Key(lambda v: Path(v).expanduser(), None),
    "cert_renew_within": _Key(parse_duration, "30d"),
    "first_user_requires_setup_token": _Key(lambda v: _parse_bool(v), False),
    # 0 when provisioner daemons run as their own service (the installed appliance).
    "provisioner_daemons": _Key(_parse_daemons, 1),
    "provisioner_psk": _Key(_parse_psk, "", secret=True),
    "provisioner_job_timeout": _Key(parse_duration, "30m"),
    "provisioner_heartbeat_timeout": _Key(parse_duration, "60s"),
    "provisioner_dir": _Key(lambda v: Path(v).expanduser(), None),
    # Built appliance provider zips, by a digest of their inputs: PyInstaller runs once per change.
    "provider_cache_dir": _Key(lambda v: Path(v).expanduser(), None),
    "registry_address": _Key(parse_address, "127.0.0.1:3002"),
    "registry_dir": _Key(lambda v: Path(v).expanduser(), None),
    "registry_embedded": _Key(lambda v: _parse_bool(v), True),
    "runtime_socket": _Key(lambda v: Path(v).expanduser(), None),
    "runtime_embedded": _Key(lambda v: _parse_bool(v), True),
    "runtime_forwarder": _Key(lambda v: _parse_bool(v), True),
    "base_image_auto": _Key(lambda v: _parse_bool(v), True),
    "agent_binary_dir": _Key(lambda v: Path(v).expanduser(), None),
    "runtime_max_cpus": _Key(_parse_max_cpus, None),
    "runtime_max_memory_mb": _Key(_parse_max_memory_mb, None),
    # 0: no per-client limit; the relay carries only paired, vouched peers and backpressure protects it.
    "relay_rate_bytes_per_second": _Key(_parse_nonnegative_int, 0),
    "relay_rate_burst_bytes": _Key(_parse_nonnegative_int, 0),  # raised to 65568 (one frame) when lower
    "relay_accept_per_second": _Key(_parse_rate, 200.0),
    "relay_accept_burst": _Key(_parse_nonnegative_int, 1000),  # 1,000 agents reconnecting after a restart
    # Console upgrades (docs/adr/0039). The spool defaults to data_dir/upgrade-requests; nginx's upload
    # location allows upgrade_max_bundle_mb too (site.yml's appliance_upgrade_max_bundle_mb sets both).
    "upgrade_spool_dir": _Key(lambda v: Path(v).expanduser(), None),
    "upgrade_max_bundle_mb": _Key(_parse_bundle_mb, 2048),
    "trusted_keys_file": _Key(lambda v: Path(v).expanduser(), "/etc/appliance/trusted-keys.pgp"),
    "upgrade_journal": _Key(lambda v: Path(v).expanduser(), None),
    "release_dir": _Key(lambda v: Path(v).expanduser(), None),
    # True on an installed appliance: appliance-upgrade.path starts the root unit that applies a request.
    "upgrade_path_unit": _Key(lambda v: _parse_bool(v), False),
    "metrics_gateway_dir": _Key(lambda v: Path(v).expanduser() if v else None, None),
}


def config_keys() -> tuple[str, ...]:
    return tuple(_KEYS)


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as err:
        raise ConfigError(
            f"Configuration file {path} does not exist.",
            "Create it, or drop --config / APPLIANCE_CONFIG to use defaults.",
        ) from err
    except PermissionError as err:
        raise ConfigError(
            f"Cannot read configuration file {path}: permission denied.",
            "Run as a user that can read it (the appliance service user or root).",
        ) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"Configuration file {path} is not valid TOML: {err}.",
                          "Fix the line it names, then start again.") from err
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(unknown)} in {path}.",
            f"Known keys: {', '.join(_KEYS)}.",
        )
    return data


def _resolve_config_file(flag: Any, environ: Mapping[str, str]) -> Path | None:
    explicit = flag or environ.get(ENV_PREFIX + "CONFIG")
    if explicit:
        return Path(explicit)
    return SYSTEM_CONFIG_FILE if SYSTEM_CONFIG_FILE.is_file() else None


def load_server_config(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Merge defaults < config file < APPLIANCE_* environment < flags; fail naming the key."""
    flags = dict(flags or {})
    environ = os.environ if environ is None else environ
    config_file = _resolve_config_file(flags.pop("config", None), environ)
    file_values = _read_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    for key, spec in _KEYS.items():
        raw, source = spec.default, "the default"
        if key in file_values:
            raw, source = file_values[key], f"{config_file} key {key!r}"
        if env_name(key) in environ:
            raw, source = environ[env_name(key)], f"environment variable {env_name(key)}"
        if flags.get(key) is not None:
            raw, source = flags[key], f"flag --{key.replace('_', '-')}"
        try:
            values[key] = spec.parse(raw) if raw is not None else None
        except (ValueError, TypeError) as err:
            raise ConfigError(f"Invalid {key} from {source}: {err}.",
                              "Correct that value and start again.") from err
    return _finish(values, config_file)


def _finish(values: dict[str, Any], config_file: Path | None) -> ServerConfig:
    # With TLS on, users reach the appliance over HTTPS unless told otherwise.
    scheme, address = ("https", values["tls_address"]) if values["tls_address"] else ("http", values["http_address"])
    if values["access_url"] is None:
        host = "127.0.0.1" if address.host in ("0.0.0.0", "::") else address.host  # noqa: S104 -- comparing, not binding
        values["access_url"] = f"{scheme}://{Address(host, address.port)}"
    if values["data_dir"] is None:
        values["data_dir"] = default_data_dir()
    if values["pki_dir"] is None:
        values["pki_dir"] = values["data_dir"] / "pki"
    if values["mirror_dir"] is None:
        values["mirror_dir"] = values["data_dir"] / "mirror"
    if values["provisioner_dir"] is None:
        values["provisioner_dir"] = values["data_dir"] / "provisioner"
    if values["registry_dir"] is None:
        values["registry_dir"] = values["data_dir"] / "registry"
    if values["runtime_socket"] is None:
        values["runtime_socket"] = values["data_dir"] / "runtime" / "runtime.sock"
    if values["provider_cache_dir"] is None:
        values["provider_cache_dir"] = default_provider_cache_dir()
    if values["agent_binary_dir"] is None:
        values["agent_binary_dir"] = values["data_dir"] / "agent"
    if values["upgrade_spool_dir"] is None:
        values["upgrade_spool_dir"] = values["data_dir"] / "upgrade-requests"
    if values["upgrade_journal"] is None:
        values["upgrade_journal"] = values["data_dir"] / "installer" / "journal.json"
    if values["max_token_lifetime"] < timedelta(hours=1):
        raise ConfigError("Invalid max_token_lifetime: it must be at least 1h.",
                          "Set max_token_lifetime to 1h or more.")
    return ServerConfig(config_file=config_file, **values)
