"""`appliance-installer logs [UNIT] [-f]`: the appliance's journals for operators who do not know journalctl.

Units go by their short names (`console` for appliance-console.service); without one, every
appliance unit is shown interleaved by time. JSON events read as `time level event key=value`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from installer.errors import InstallError
from installer.support_bundle import journal_units
from operator_errors.logs import render_event

# journald's PRIORITY as the level a JSON event would name.
_LEVELS = {"0": "emerg", "1": "alert", "2": "crit", "3": "error", "4": "warning", "5": "notice", "6": "info",
           "7": "debug"}


def short_name(unit: str) -> str:
    """appliance-console.service -> console; postgresql@15-main.service -> postgresql."""
    return unit.removesuffix(".service").removeprefix("appliance-").split("@")[0]


def resolve_units(name: str | None) -> list[str]:
    """The units `name` means (all of them for None); InstallError listing the valid names for any other."""
    units = journal_units()
    if name is None:
        return units
    wanted = name.removesuffix(".service").removesuffix(".timer")
    for unit in units:
        if wanted in (short_name(unit), unit.removesuffix(".service")):
            return [unit]
    raise InstallError(f"{name!r} is not one of the appliance's units.",
                       "Pick one of: " + ", ".join(short_name(u) for u in units) + " (or none, for all of them).")


def journalctl_command(units: list[str], *, follow: bool, lines: int, since: str | None) -> list[str]:
    command = ["journalctl", "--output", "json", "--no-pager", "--lines", str(lines)]
    for unit in units:
        command += ["--unit", unit]
    if since:
        command += ["--since", since]
    return [*command, "--follow"] if follow else command


def render_entry(entry: dict[str, Any], *, with_unit: bool) -> str:
    """One journal entry (journalctl -o json) as a readable line; the unit's short name first when interleaved."""
    message = entry.get("MESSAGE", "")
    if isinstance(message, list):  # journald sends bytes that are not UTF-8 as a list of ints
        message = bytes(message).decode(errors="replace")
    rendered = render_event(str(message))
    if rendered == message:
        stamp = datetime.fromtimestamp(int(entry.get("__REALTIME_TIMESTAMP", 0)) / 1e6, UTC)
        level = _LEVELS.get(str(entry.get("PRIORITY", "6")), "info")
        rendered = f"{stamp:%Y-%m-%d %H:%M:%S} {level:<7} {message}"
    unit = short_name(str(entry.get("_SYSTEMD_UNIT") or entry.get("UNIT") or entry.get("SYSLOG_IDENTIFIER", "")))
    return f"{unit:<12} {rendered}" if with_unit else rendered


def journal_lines(units: list[str], *, follow: bool, lines: int, since: str | None) -> Iterator[str]:
    """The rendered lines journalctl gives for `units`, as they come."""
    try:
        process = subprocess.Popen(journalctl_command(units, follow=follow, lines=lines, since=since),
                                   stdout=subprocess.PIPE, text=True)
    except OSError as err:
        raise InstallError(f"cannot run journalctl: {err.strerror}.", "Run it on the appliance host, as root.") \
            from err
    assert process.stdout is not None
    try:
        for line in process.stdout:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            yield render_entry(entry, with_unit=len(units) > 1)
    finally:
        process.terminate()
        process.wait()
    if process.returncode not in (0, -15):
        raise InstallError(f"journalctl exited with {process.returncode}.", "Run it as root (sudo).")
