"""Markers come from the directory a test lives in: unit, integration, browser, e2e."""

from __future__ import annotations

import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.provider_zips import real_provider_zip

_KINDS = ("unit", "integration", "browser", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in _KINDS:
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))


def pytest_configure(config: pytest.Config) -> None:
    """Temp folders terraform's sandbox uid can search (it resolves the job directory and the mirror itself).

    pytest's own root, /tmp/pytest-of-USER, is private and re-made private by every session that
    starts, so each session gets a searchable (0711, not listable) base of its own instead.
    """
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="pytest-appliance-")


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.option.basetemp
    if base and Path(base).name.startswith("pytest-appliance-"):
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _searchable_temp_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The base and every tmp_path and mktemp folder are made 0700; let the sandbox uid search them (o+x)."""
    tmp_path_factory.getbasetemp().chmod(0o711)
    private = tmp_path_factory.mktemp

    def searchable(basename: str, numbered: bool = True) -> Path:
        path = private(basename, numbered)
        path.chmod(path.stat().st_mode | stat.S_IXOTH)
        return path

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tmp_path_factory, "mktemp", searchable)
        yield


@pytest.fixture(scope="session")
def hello_provider_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The greeting test provider packaged as `hello` 1.0.0, a real provider (PyInstaller, half a minute).

    Built once per session: the mirror's terraform tests and the e2e release both serve it, each
    from a copy laid out as it needs.
    """
    return real_provider_zip(tmp_path_factory.mktemp("hello-provider"), "hello", "1.0.0")
