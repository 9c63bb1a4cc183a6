"""The health report's pure parts: every code a check reports belongs to its section, and dismissals stop counting."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.health import report
from appliance.health.context import finding, section
from appliance.health.report import CHECKS, FAILED, _apply
from appliance.sdk.health import CODES, SECTIONS, Severity

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
