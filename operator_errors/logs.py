"""Event logs with fields: `user_created user_id=...` in development, one JSON object per line installed.

Every process of an installed appliance (console, gateway, relay, daemons, installer) logs through
this module, so their journals carry the same fields: time, level, logger, event, then the event's.

Callers log an event name and pass fields through `extra=`; any field whose name looks like a
secret is replaced before formatting, so a careless call cannot leak a password or token.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from operator_errors.redaction import is_secret_key

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
REDACTED = "[redacted]"


def event_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in vars(record).items()
            if k not in _STANDARD_ATTRS}


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text or text == "") else text


def _text_line(stamp: str, level: str, event: str, fields: dict[str, Any]) -> str:
    line = f"{stamp} {level:<7} {event}"
    text = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
    return f"{line} {text}" if text else line


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        line = _text_line(stamp, record.levelname.lower(), record.getMessage(), event_fields(record))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def render_event(line: str) -> str:
    """One JSON event line as an operator reads it (`2026-01-02 10:00:00 info event key=value`); other lines as is."""
    try:
        body = json.loads(line)
    except ValueError:
        return line
    if not isinstance(body, dict) or not isinstance(body.get("event"), str):
        return line
    fields = {k: v for k, v in body.items() if k not in ("time", "level", "logger", "event", "exception")}
    stamp = str(body.get("time", ""))[:19].replace("T", " ")
    text = _text_line(stamp, str(body.get("level", "info")), body["event"], fields)
    return f"{text}\n{body['exception']}" if body.get("exception") else text


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
