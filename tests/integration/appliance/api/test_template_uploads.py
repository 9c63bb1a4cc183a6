"""POST /files refuses a hostile template archive with a 400 saying which limit it broke, and stores nothing."""

from __future__ import annotations

import gzip

import pytest

from tests.support.api import Api
from tests.support.archives import MIB, bomb, tar_of

TAR = {"Content-Type": "application/x-tar"}


@pytest.mark.security(finding=8)
@pytest.mark.parametrize(("archive", "message"), [
    (bomb("gzip", members=1, size_each=512 * MIB), "at most 16 MiB, and its files declare 512.0 MiB by 'data/0.bin'"),
    (bomb("bz2", members=4, size_each=8 * MIB), "at most 16 MiB, and it unpacks to more than that"),
    (bomb("xz", members=64, size_each=4 * MIB), "at most 16 MiB, and it unpacks to more than that"),
    (gzip.compress(tar_of(*[(f"f{i}.tf", b"x") for i in range(10_000)])), "more than 1000 files and directories"),
    (tar_of(("main.tf", b"a"), ("main.tf", b"b")), "'main.tf' appears twice"),
], ids=["a 510 KiB gzip declaring 512 MiB", "a bz2 bomb of 32 MiB in 8 MiB members", "an xz bomb of 256 MiB",
        "10,000 tiny members", "a duplicate name"])
def test_a_hostile_template_archive_is_refused_naming_the_limit(owner_api: Api, archive: bytes,
                                                                message: str) -> None:
    refused = owner_api.post("/api/v2/files", data=archive, headers=TAR)
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["message"].startswith("The template archive is refused: ")
    assert message in body["message"]
    assert "push" in body["detail"]
