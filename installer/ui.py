"""How the installer shows progress: named steps, a byte bar for long reads, the current task.

On a terminal, rich lines; under systemd (APPLIANCE_LOG_FORMAT=json, the backup and upgrade units),
JSON events with the fields every appliance process logs (operator_errors.logs).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from installer.preflight import BLOCK, PASS, WARN, Check
from operator_errors.logs import configure_logging

LOG_FORMAT_ENV = "APPLIANCE_LOG_FORMAT"
log = logging.getLogger("installer")


class Ui(Protocol):
    def step(self, name: str) -> AbstractContextManager[None]: ...
    def byte_progress(self, description: str, total: int) -> AbstractContextManager[Callable[[int], None]]: ...
    def task(self, text: str) -> None: ...
    def checks(self, checks: list[Check]) -> None: ...
    def info(self, text: str) -> None: ...


class ConsoleUi:
    """Rich output on stderr; plain lines when not on a terminal (logs, CI)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self._status: object = None

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.console.print(f"[bold]==> {name}[/]")
        if self.console.is_terminal:
            with self.console.status(name) as status:
                self._status = status
                yield
            self._status = None
        else:
            yield

    @contextmanager
    def byte_progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        columns = [TextColumn("    {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn()]
        with Progress(*columns, console=self.console, disable=not self.console.is_terminal) as progress:
            task = progress.add_task(description, total=total)
            yield lambda n: progress.advance(task, n)

    def task(self, text: str) -> None:
        if self._status is not None:
            self._status.update(f"Ansible: {text}")  # type: ignore[attr-defined]
        else:
            self.console.print(f"    {text}")

    def checks(self, checks: list[Check]) -> None:
        table = Table(box=None, show_header=False, pad_edge=False)
        for column in ("status", "check", "message"):
            table.add_column(column)
        marks = {PASS: "[green]ok[/]", WARN: "[yellow]warn[/]", BLOCK: "[red]BLOCK[/]"}
        for check in checks:
            mark = "[yellow]ignored[/]" if check.ignored else marks[check.status]
            text = check.message + (f"\n[dim]fix: {check.fix}[/]" if check.fix and check.status != PASS else "")
            table.add_row(f"    {mark}", check.name, text)
        self.console.print(table)

    def info(self, text: str) -> None:
        self.console.print(text)


class JsonUi:
    """Progress as JSON events on stderr, for a journal: step_started/step_finished, ansible_task, check, info."""

    def __init__(self) -> None:
        configure_logging("json")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("step_started", extra={"step": name})
        started = time.monotonic()
        yield
        log.info("step_finished", extra={"step": name, "seconds": round(time.monotonic() - started, 1)})

    @contextmanager
    def byte_progress(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        log.info("reading", extra={"what": description, "bytes": total})
        yield lambda n: None

    def task(self, text: str) -> None:
        log.info("ansible_task", extra={"task": text})

    def checks(self, checks: list[Check]) -> None:
        for check in checks:
            log.info("preflight_check", extra={"check": check.name, "status": check.status,
                                               "check_message": check.message, "ignored": check.ignored})

    def info(self, text: str) -> None:
        log.info("info", extra={"text": text})


def is_json_logging() -> bool:
    """Whether this run logs JSON events (set by the units that run the installer), not lines for a person."""
    return os.environ.get(LOG_FORMAT_ENV) == "json"


def make_ui(console: Console) -> Ui:
    return JsonUi() if is_json_logging() else ConsoleUi(console)
