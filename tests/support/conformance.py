"""Every JSON answer the test servers give is checked against the response model its operation declares.

live_server installs the check; an autouse fixture fails the test that received an answer whose
keys or types differ from the model (so a drifted converter fails the suite, not a CLI user).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
from flask import Flask, Response, request
from pydantic import BaseModel, ValidationError

from appliance.api.spec import OPERATIONS

_lock = threading.Lock()
violations: list[str] = []
checked: set[tuple[str, str]] = set()


def conformance_problem(model: type[BaseModel], raw: bytes) -> str | None:
    """Why `raw` is not exactly what `model` serialises to (extra or missing keys, other types), or None."""
    try:
        data = json.loads(raw)
        parsed = model.model_validate(data)
    except (ValueError, ValidationError) as err:
        return f"does not parse as {model.__name__}: {err}"
    again = parsed.model_dump(mode="json")
    if again != data:
        return f"differs from {model.__name__} when serialised again:\n  sent     {data}\n  declared {again}"
    return None


def check_responses(app: Flask) -> None:
    """Record, for every successful JSON answer, whether it matches its operation's declared model."""
    operations = {(op.path, op.method): op for op in OPERATIONS}

    @app.after_request
    def check(response: Response) -> Response:
        rule = request.url_rule
        op = operations.get((rule.rule, request.method)) if rule is not None else None
        if (op is None or op.response is None or response.status_code != op.status or response.is_streamed
                or response.mimetype != "application/json"):
            return response
        problem = conformance_problem(op.response, response.get_data())
        with _lock:
            checked.add((op.method, op.path))
            if problem:
                violations.append(f"{request.method} {request.path}: {problem}")
        return response


def take_violations() -> list[str]:
    with _lock:
        found = list(violations)
        violations.clear()
    return found


@pytest.fixture(autouse=True)
def answers_match_their_models() -> Iterator[None]:
    """Fail a test whose server answered with JSON its operation's declared response model does not describe.

    Imported by the integration and browser conftests, the suites that run a live server.
    """
    take_violations()
    yield
    problems = take_violations()
    assert not problems, "\n".join(problems)
