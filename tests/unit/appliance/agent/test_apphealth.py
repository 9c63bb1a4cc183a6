"""Coder's app health rules: healthy on any answer, unhealthy only after `threshold` failures in a row."""

from __future__ import annotations

import pytest

from appliance.agent.apphealth import AppHealthChecks, answers, next_health
from appliance.sdk.agents import AgentApp, AppHealthcheck

pytestmark = pytest.mark.unit


def test_an_answer_makes_an_app_healthy_at_once() -> None:
    assert next_health("initializing", True, 0, 3) == "healthy"
    assert next_health("unhealthy", True, 0, 3) == "healthy"


def test_failures_keep_the_state_until_the_threshold() -> None:
    assert next_health("healthy", False, 2, 3) == "healthy"
    assert next_health("initializing", False, 2, 3) == "initializing"
    assert next_health("healthy", False, 3, 3) == "unhealthy"


def test_only_apps_with_a_healthcheck_are_checked_and_they_start_initializing() -> None:
    checks = AppHealthChecks([
        AgentApp(id="a", slug="web", url="http://localhost:8080", healthcheck=AppHealthcheck(
            url="http://localhost:8080/health", interval=1, threshold=2)),
        AgentApp(id="b", slug="docs", url="http://localhost:9000", healthcheck=None)])
    assert checks.health == {"a": "initializing"}


def test_a_url_that_is_not_http_never_answers() -> None:
    assert not answers("file:///etc/passwd", 1.0)
