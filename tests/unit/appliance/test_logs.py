"""Event logs: fields are rendered, and secret-looking fields are redacted whatever the caller passed."""

from __future__ import annotations

import json
import logging

from appliance.logs import JsonFormatter, TextFormatter


def _record(**fields: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"msg": "user_created", "levelname": "INFO", "levelno": 20})
    for key, value in fields.items():
        setattr(record, key, value)
    return record


def test_text_lines_carry_the_event_and_its_fields() -> None:
    line = TextFormatter().format(_record(user_id="42", path="/a b"))
    assert "user_created" in line
    assert "user_id=42" in line
    assert 'path="/a b"' in line


def test_json_lines_are_one_object_with_fields() -> None:
    body = json.loads(JsonFormatter().format(_record(user_id="42")))
    assert body["event"] == "user_created"
    assert body["user_id"] == "42"


def test_secret_fields_never_reach_the_log() -> None:
    record = _record(password="hunter2", session_token="abc", api_secret="s3", postgres_password="p")
    for formatter in (TextFormatter(), JsonFormatter()):
        out = formatter.format(record)
        for secret in ("hunter2", "abc", "s3", "=p"):
            assert secret not in out
