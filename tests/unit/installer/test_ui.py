"""The installer's progress under systemd: JSON events with the fields every appliance process logs."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from rich.console import Console

from installer.preflight import WARN, Check
from installer.ui import ConsoleUi, JsonUi, make_ui


@pytest.fixture
def root_logging() -> Iterator[None]:
    """JsonUi configures the root logger, as a process's one logging setup does: put it back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_under_systemd_steps_tasks_and_checks_are_json_events(capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_LOG_FORMAT", "json")
    ui = make_ui(Console(stderr=True))
    assert isinstance(ui, JsonUi)
    with ui.step("Migrate"):
        ui.task("Ensure the console unit is running.")
    ui.checks([Check("disk", WARN, "3 GB free", "Free some space.")])
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [e["event"] for e in events] == ["step_started", "ansible_task", "step_finished", "preflight_check"]
    assert all({"time", "level", "logger"} <= set(e) and e["logger"] == "installer" for e in events)
    assert events[1]["task"] == "Ensure the console unit is running." and events[3]["status"] == WARN


def test_on_a_terminal_it_stays_rich_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPLIANCE_LOG_FORMAT", raising=False)
    assert isinstance(make_ui(Console(stderr=True)), ConsoleUi)
