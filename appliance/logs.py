"""Event logs with fields: `user_created user_id=...` in development, one JSON object per line installed.

Callers log an event name and pass fields through `extra=`; any field whose name looks like a
secret is replaced before formatting, so a careless call cannot leak a password or token.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
_SECRET_MARKERS = ("password", "secret", "token", "passphrase", "cookie", "authorization")
REDACTED = "[redacted]"


@functools.lru_cache(maxsize=1024)  # field names repeat on every line; the scan showed in profiles
def is_secret_field(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in _SECRET_MARKERS)


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: (REDACTED if is_secret_field(k) else v) for k, v in vars(record).items()
            if k not in _STANDARD_ATTRS}


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text or text == "") else text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={_quote(v)}" for k, v in event_fields(record).items())
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        line = f"{stamp} {record.levelname.lower():<7} {record.getMessage()}"
        line = f"{line} {fields}" if fields else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **event_fields(record),
        }
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def configure_logging(log_format: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
