"""The CLI's stored login: ~/.config/appliance/session, mode 0600, written atomically."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import OperatorError


@dataclass(frozen=True)
class StoredSession:
    url: str
    token: str
    ca_file: str | None = None


CONFIG_DIR_ENV = "APPLIANCE_CONFIG_DIR"  # what `appliance config-ssh` pins in each ProxyCommand


def config_dir() -> Path:
    """Where the CLI keeps its session and keys: $APPLIANCE_CONFIG_DIR, else $XDG_CONFIG_HOME/appliance."""
    if explicit := os.environ.get(CONFIG_DIR_ENV):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "appliance"


def session_path() -> Path:
    return config_dir() / "session"


def load_session() -> StoredSession | None:
    path = session_path()
    try:
        data = json.loads(path.read_text())
        return StoredSession(url=str(data["url"]), token=str(data["token"]), ca_file=data.get("ca_file"))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as err:
        raise OperatorError(f"The stored session in {path} is unreadable.",
                            "Run 'appliance login URL' again to replace it.") from err


def save_session(session: StoredSession) -> Path:
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = session_path()
    temp = path.with_name(f".session.{os.getpid()}.tmp")
    # Created 0600 from the first byte: the token is never readable by others, even briefly.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": session.url, "token": session.token, "ca_file": session.ca_file}, handle)
    temp.replace(path)
    return path


def trusted_ca_path() -> Path:
    """Where `appliance login --ca-fingerprint` keeps the CA bundle it verified."""
    return config_dir() / "ca.pem"


def forget_session() -> None:
    session_path().unlink(missing_ok=True)
