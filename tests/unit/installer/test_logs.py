"""`appliance-installer logs`: units by short name, JSON events rendered for people; and every unit logs JSON."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import re
from pathlib import Path

import pytest

from appliance.registry.config import RegistrySettings, registry_config
from installer.errors import InstallError
from installer.logs import journalctl_command, render_entry, resolve_units
from installer.support_bundle import journal_units
from operator_errors.logs import JsonFormatter, render_event

REPO = Path(__file__).resolve().parents[3]
ROLES = REPO / "playbooks" / "roles"
EVENT = {"time": "2026-03-04T05:06:07.891011+00:00", "level": "warning", "logger": "appliance.relay",
         "event": "peer_refused", "peer": "ab12", "reason": "not admitted"}


@pytest.mark.parametrize(("name", "unit"), [
    ("console", "appliance-console.service"),
    ("appliance-console", "appliance-console.service"),
    ("appliance-relay.service", "appliance-relay.service"),
    ("postgresql", "postgresql@15-main.service"),
    ("backup", "appliance-backup.service"),
    ("pki-renew.timer", "appliance-pki-renew.service"),
    ("nginx", "nginx.service"),
], ids=lambda v: v)
def test_a_unit_goes_by_its_short_name_with_or_without_the_prefix(name: str, unit: str) -> None:
    assert resolve_units(name) == [unit]


def test_no_unit_means_every_appliance_unit() -> None:
    assert resolve_units(None) == journal_units()
    command = journalctl_command(resolve_units(None), follow=True, lines=50, since="1 hour ago")
    assert command.count("--unit") == len(journal_units())
    assert command[-1] == "--follow" and "--since" in command and "50" in command


def test_an_unknown_unit_is_refused_with_the_list_of_valid_ones() -> None:
    with pytest.raises(InstallError) as caught:
        resolve_units("sshd")
    assert "'sshd' is not one of the appliance's units" in caught.value.message
    for name in ("console", "gateway", "relay", "provisioner", "registry", "runtime", "backup", "postgresql"):
        assert name in caught.value.hint


def test_a_json_event_reads_as_time_level_event_and_fields() -> None:
    line = render_event(json.dumps(EVENT))
    assert line == '2026-03-04 05:06:07 warning peer_refused peer=ab12 reason="not admitted"'


def test_what_the_json_formatter_writes_renders_back_with_its_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError as err:
        record = logging.makeLogRecord({"name": "appliance.gateway", "levelname": "ERROR", "msg": "follow_failed",
                                        "build": "b1", "exc_info": (type(err), err, err.__traceback__)})
    rendered = render_event(JsonFormatter().format(record))
    first, *rest = rendered.splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d error   follow_failed build=b1", first)
    assert "ValueError: boom" in rest[-1]


@pytest.mark.parametrize("line", ["plain text from nginx", '{"no": "event"}', "[1, 2]", ""], ids=repr)
def test_a_line_that_is_no_event_is_shown_as_it_is(line: str) -> None:
    assert render_event(line) == line


def test_journal_entries_show_their_unit_when_interleaved_and_plain_lines_get_time_and_level() -> None:
    event = {"MESSAGE": json.dumps(EVENT), "_SYSTEMD_UNIT": "appliance-relay.service",
             "__REALTIME_TIMESTAMP": "1772600767000000", "PRIORITY": "6"}
    plain = {"MESSAGE": "could not bind", "_SYSTEMD_UNIT": "nginx.service",
             "__REALTIME_TIMESTAMP": "1772600767000000", "PRIORITY": "3"}
    assert render_entry(event, with_unit=True).startswith("relay        2026-03-04 05:06:07 warning peer_refused")
    assert render_entry(plain, with_unit=False) == "2026-03-04 05:06:07 error   could not bind"
    binary = {**plain, "MESSAGE": list(b"caf\xc3\xa9 \xff")}
    assert render_entry(binary, with_unit=False).endswith("café \ufffd")


# Every unit's ExecStart, and how it comes to log JSON on an installed host.
def _unit_templates() -> dict[str, str]:
    return {t.name.removesuffix(".j2"): t.read_text() for t in sorted(ROLES.glob("*/templates/*.service.j2"))}


def _reads_log_format_from_config(subcommand: str) -> bool:
    """Whether `appliance SUBCOMMAND` configures logging from its config's log_format."""
    from appliance.cli.main import COMMANDS

    group, *rest = subcommand.split()
    module, _, attr = COMMANDS[group].partition(":")
    command = getattr(importlib.import_module(module), attr)
    for name in rest:
        command = command.commands[name]
    source = inspect.getsource(command.callback)
    return "configure_logging(config.log_format" in source or 'config.log_format == "json"' in source


def test_every_unit_runs_its_process_with_json_logs() -> None:
    base = (ROLES / "base" / "templates" / "appliance.toml.j2").read_text()
    assert 'log_format = "{{ base_log_format }}"' in base
    assert "base_log_format: json" in (ROLES / "base" / "defaults" / "main.yml").read_text()
    config_json = "Environment=APPLIANCE_CONFIG=/etc/appliance/appliance.toml"
    units = _unit_templates()
    assert len(units) >= 9
    for unit, text in units.items():
        exec_start = re.search(r"^ExecStart=(.*)$", text, re.M)[1]  # type: ignore[index]
        if "/gunicorn " in exec_start:
            assert "--config python:appliance.server.gunicorn_conf" in exec_start, unit
            assert config_json in text, unit  # the app's own events
            module = importlib.import_module("appliance.server.gunicorn_conf")
            conf = module.logconfig_dict
            assert conf["formatters"]["json"]["()"] == "operator_errors.logs.JsonFormatter"
            assert module.on_starting and module.child_exit  # gunicorn takes one config: the metrics' hooks too
            assert conf["loggers"]["gunicorn.error"]["propagate"] is True
        elif "docker-registry" in exec_start:
            settings = RegistrySettings(Path("/storage"), "127.0.0.1:5000", "https://appliance.test", Path("/root.pem"))
            assert registry_config(settings)["log"]["formatter"] == "json"  # type: ignore[index]
        elif re.search(r"_installer\s", exec_start):
            assert "Environment=APPLIANCE_LOG_FORMAT=json" in text, unit
        elif m := re.search(r"(?:/venv/bin/appliance|_appliance \}\}) ((?:[a-z-]+ ?){1,2})", exec_start):
            subcommand = " ".join(w for w in m[1].split() if not w.startswith("-"))
            assert "--log-format json" in exec_start or (
                config_json in text and _reads_log_format_from_config(subcommand)), unit
        else:
            pytest.fail(f"{unit}: say how {exec_start!r} logs JSON events")
