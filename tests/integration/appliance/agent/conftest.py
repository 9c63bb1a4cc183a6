"""A control plane with a relay and an in-process provisioner for the agent's tests, shared by the package."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.support.api import Api
from tests.support.postgres import create_database, drop_database
from tests.support.server import LiveServer, live_server


@pytest.fixture(scope="package")
def agent_db(admin_conninfo: str, template_db: str) -> Iterator[str]:
    yield create_database(admin_conninfo, "agent_module", template=template_db)
    drop_database(admin_conninfo, "agent_module")


@pytest.fixture(scope="package")
def site(agent_db: str, appliance_mirror: Path, site_pki: Path,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return {"mirror_dir": appliance_mirror, "pki_dir": site_pki, "provisioner_daemons": 1,
            "provisioner_dir": tmp_path_factory.mktemp("provisioner"),
            "provisioner_heartbeat_timeout": timedelta(seconds=10)}


@pytest.fixture(scope="package")
def agent_server(agent_db: str, site: dict[str, object]) -> Iterator[LiveServer]:
    with live_server(agent_db, **site) as live:
        yield live


@pytest.fixture(scope="package")
def owner(agent_server: LiveServer) -> Api:
    """The module's one user; every test makes a workspace of its own name."""
    api = Api(agent_server.url)
    api.create_first_user("owner")
    return api.as_user(api.login("owner"))
