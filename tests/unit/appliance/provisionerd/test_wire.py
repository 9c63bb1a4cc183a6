"""The daemon's wire shapes: bytes travel as base64, and a bad value is refused naming its field."""

from __future__ import annotations

import base64
import io
import json
import re
import tarfile
from pathlib import Path
from uuid import uuid4

import pytest
from pydantic import ValidationError

from appliance.provisionerd.unpack import unpack_template
from appliance.sdk.provisionerd import MAX_STATE_BYTES, FailJobRequest, JobSpec, JobType

pytestmark = pytest.mark.unit
NGINX_SITE = Path(__file__).resolve().parents[4] / "playbooks" / "roles" / "nginx" / "templates" / "appliance.conf.j2"


def _spec(state: bytes | None) -> JobSpec:
    return JobSpec(id=uuid4(), type=JobType.BUILD, timeout_seconds=600, transition="start",
                   env={"APPLIANCE_WORKSPACE_NAME": "dev"}, source=b"\x00tar\xff", state=state, secrets=["s" * 8])


@pytest.mark.parametrize("state", [b'{"version": 4}', b"", None], ids=["with state", "empty state", "no state"])
def test_a_job_spec_survives_the_wire_with_bytes_as_base64(state: bytes | None) -> None:
    spec = _spec(state)
    wire = json.loads(json.dumps(spec.model_dump(mode="json")))
    assert wire["source"] == base64.b64encode(b"\x00tar\xff").decode()
    assert wire["type"] == "workspace_build"
    parsed = JobSpec.model_validate(wire)
    assert parsed == spec and parsed.type is JobType.BUILD and parsed.state == state


def test_a_failure_carrying_state_is_refused_naming_the_field() -> None:
    """State travels only on its own streamed route, never inside a JSON body bounded at 1 MiB."""
    with pytest.raises(ValidationError) as caught:
        FailJobRequest.model_validate({"error": "apply failed", "state": "e30="})
    assert caught.value.errors()[0]["loc"] == ("state",) and "Extra inputs" in str(caught.value)


def test_nginx_lets_through_a_state_as_large_as_the_server_stores() -> None:
    location = re.search(r"location ~ \^/api/v2/provisionerd/jobs/\[\^/\]\+/state\$ \{(.*?)\}",
                         NGINX_SITE.read_text(), re.DOTALL)
    assert location, "the nginx site has no location of its own for Terraform state"
    bound = re.search(r"client_max_body_size (\d+)m;", location.group(1))
    assert bound and int(bound.group(1)) << 20 == MAX_STATE_BYTES


def _archive(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _file(name: str, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info


def test_unpacking_keeps_the_template_and_drops_state_a_careless_push_carried(tmp_path: Path) -> None:
    unpack_template(_archive((_file("main.tf", 0o4777), b"# tf"), (_file("run.sh", 0o700), b"#!/bin/sh"),
                             (_file("terraform.tfstate"), b"{}"), (_file(".terraform/x"), b"")), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["main.tf", "run.sh"]
    assert (tmp_path / "main.tf").stat().st_mode & 0o7777 == 0o755  # setuid never survives
    assert (tmp_path / "run.sh").stat().st_mode & 0o777 == 0o755


def test_unpacking_refuses_a_link_and_writes_nothing(tmp_path: Path) -> None:
    link = tarfile.TarInfo("evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(tarfile.TarError, match="'evil' is not a regular file"):
        unpack_template(_archive((_file("main.tf"), b""), (link, b"")), tmp_path)
    assert list(tmp_path.iterdir()) == []
