"""What `appliance server` tells an operator who cannot package the appliance provider, and the fix it names."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from appliance.server.provider import missing_build_requirements


def _on_path(*present: str) -> Callable[[str], str | None]:
    return lambda tool: f"/usr/bin/{tool}" if tool in present else None


@pytest.mark.parametrize(("modules", "tools", "named", "fix"), [
    ({"tf"}, {"objdump"}, "PyInstaller is not installed", "pip install 'appliance[build]'"),
    ({"PyInstaller"}, {"objdump"}, "tf is not installed", "pip install 'appliance[build]'"),
    (set(), {"objdump"}, "PyInstaller and tf are not installed", "pip install 'appliance[build]'"),
    ({"PyInstaller", "tf"}, set(), "objdump is not on PATH", "apt-get install binutils"),
], ids=["without PyInstaller", "without tf", "without the build extra at all", "without binutils"])
def test_a_missing_build_requirement_is_named_with_its_fix(
        modules: set[str], tools: set[str], named: str, fix: str) -> None:
    problem = missing_build_requirements(has_module=lambda name: name in modules, which=_on_path(*tools))
    assert problem is not None
    assert named in problem.message
    assert fix in problem.hint and "restart `appliance server`" in problem.hint


def test_nothing_is_missing_when_the_build_extra_and_binutils_are_there() -> None:
    assert missing_build_requirements(has_module=lambda _: True, which=_on_path("objdump")) is None
