"""A relay to dial: `appliance server`'s embedded front (one port) on a database of this package's own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import create_database, drop_database
from tests.support.server import LiveServer, live_server

_names = itertools.count(1)


@pytest.fixture(scope="module")
def relay_db(admin_conninfo: str, template_db: str) -> Iterator[str]:
    name = f"relay_{next(_names)}"
    yield create_database(admin_conninfo, name, template=template_db)
    drop_database(admin_conninfo, name)


@pytest.fixture(scope="module")
def relay_server(relay_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    pki: Path = tmp_path_factory.mktemp("relay") / "pki"
    pki.mkdir()
    with live_server(relay_db, pki_dir=pki) as live:
        yield live
