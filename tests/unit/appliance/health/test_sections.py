"""The health report's pure parts: every code a check reports belongs to its section, and dismissals stop counting."""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.health import backups, report
from appliance.health.context import HealthContext, finding, section
from appliance.health.report import CHECKS, FAILED, _apply
from appliance.sdk.health import CODES, SECTIONS, HealthSection, Severity
from tests.support.server import make_config

NOW = datetime(2026, 6, 1, tzinfo=UTC)

PACKAGE = Path(report.__file__).parent
MODULE_OF = {name: name for name in SECTIONS}


@pytest.mark.parametrize("name", SECTIONS)
def test_each_section_has_a_check_module_reporting_only_its_own_codes(name: str) -> None:
    source = (PACKAGE / f"{MODULE_OF[name]}.py").read_text()
    used = set(re.findall(r'finding\("([A-Z]+\d\d)"', source))
    assert used, f"{name}.py reports no code"
    assert {CODES[code] for code in used} == {name}
    assert CODES[FAILED[name]] == name
    assert name == "database" or name in CHECKS


def test_the_worst_finding_not_dismissed_is_the_sections_severity() -> None:
    mixed = section([finding("EDISK01", Severity.WARNING, "low"), finding("EDISK02", Severity.ERROR, "full")])
    assert mixed.severity == "error" and not mixed.healthy and mixed.error == "EDISK02: full"
    dismissed = _apply(mixed, {"EDISK02"})
    assert dismissed.severity == "warning" and dismissed.healthy and dismissed.error is None
    assert [f.dismissed for f in dismissed.findings] == [False, True] and not dismissed.dismissed
    assert _apply(mixed, {"EDISK01", "EDISK02"}).dismissed
    assert section(latency_ms=1.0).severity == "ok" and section().details == {}


def test_a_code_not_in_codes_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        finding("EXYZ99", Severity.ERROR, "no such code")


def _backups_section(tmp_path: Path, summary: object | None, *, installed_days_ago: float) -> HealthSection:
    installer = tmp_path / "installer"
    (installer / "receipts").mkdir(parents=True)
    receipt = installer / "receipts" / "latest.json"
    receipt.write_text("{}")
    installed = NOW.timestamp() - installed_days_ago * 86400
    os.utime(receipt, (installed, installed))
    if summary is not None:
        (installer / "backups.json").write_text(json.dumps(summary))
    config = replace(make_config(port=1, postgres_url=None), upgrade_journal=installer / "journal.json")
    return backups._check(HealthContext(config=config, db=None, now=NOW))


def test_backups_read_the_installers_summary(tmp_path: Path) -> None:
    fresh = {"backups": [{"name": "b", "created_at": "2026-05-31T02:00:00Z"}], "last_failure": None}
    assert _backups_section(tmp_path / "fresh", fresh, installed_days_ago=30).severity == "ok"
    assert _backups_section(tmp_path / "new", None, installed_days_ago=1).severity == "ok"
    none = _backups_section(tmp_path / "none", None, installed_days_ago=3)
    assert [f.code for f in none.findings] == ["EBAK01"]
    stale = {"backups": [{"name": "a", "created_at": "2026-05-20T02:00:00Z"}],
             "last_failure": {"at": "2026-05-31T02:00:00Z", "error": "pg_dump failed: disk full"}}
    found = _backups_section(tmp_path / "stale", stale, installed_days_ago=30)
    assert [f.code for f in found.findings] == ["EBAK02", "EBAK01"] and found.severity == "warning"
    assert "disk full" in found.findings[0].message
