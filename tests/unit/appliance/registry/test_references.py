"""Image references: which registry host they name, read as docker and podman read them."""

from __future__ import annotations

import pytest

from appliance.registry.references import Reference, is_internal, parse_reference

INTERNAL = frozenset({"127.0.0.1:3002", "localhost:3002"})


@pytest.mark.parametrize(("image", "expected"), [
    ("127.0.0.1:3002/base/debian:12", Reference("127.0.0.1:3002", "base/debian", "12", None)),
    ("localhost:3002/app", Reference("localhost:3002", "app", "latest", None)),
    ("debian:12", Reference("docker.io", "debian", "12", None)),
    ("library/debian", Reference("docker.io", "library/debian", "latest", None)),
    ("quay.io/team/app@sha256:" + "a" * 64, Reference("quay.io", "team/app", None, "sha256:" + "a" * 64)),
], ids=["host port repo and tag", "localhost without a tag", "a bare name is docker hub",
        "a path without a host is docker hub", "a digest reference"])
def test_parse_reference(image: str, expected: Reference) -> None:
    assert parse_reference(image) == expected


@pytest.mark.parametrize(("image", "internal"), [
    ("127.0.0.1:3002/base/debian:12", True),
    ("localhost:3002/base/debian:12", True),
    ("127.0.0.1:3003/base/debian:12", False),
    ("debian:12", False),
    ("127.0.0.1/base/debian:12", False),
], ids=["the registry's address", "its loopback name", "another port", "docker hub", "the host without the port"])
def test_only_the_internal_registrys_host_and_port_count(image: str, internal: bool) -> None:
    assert is_internal(image, INTERNAL) is internal
