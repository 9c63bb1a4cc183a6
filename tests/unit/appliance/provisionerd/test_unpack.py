"""Template archive limits: bombs, floods of members, deep and duplicate paths are refused as they stream."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.provisionerd.unpack import (
    MAX_MEMBERS,
    MAX_PATH_DEPTH,
    ArchiveRefused,
    check_archive,
    unpack_template,
)
from tests.support.archives import MIB, bomb, pax_bomb, tar_of

pytestmark = pytest.mark.unit
SHRINK = "leave build outputs, data, node_modules/ and .terraform/ out"

# Each builds in milliseconds and is refused long before its declared size is decompressed (timings in the
# report of issue 12; no wall-clock assert here).
HOSTILE = [
    pytest.param(lambda: bomb("bz2", members=1, size_each=1024 * MIB),
                 "may unpack to at most 16 MiB, and its files declare 1024.0 MiB by 'data/0.bin'", SHRINK,
                 id="a bz2 bomb: 1 GiB of zeros in 3 KiB"),
    pytest.param(lambda: bomb("xz", members=128, size_each=4 * MIB),
                 "may unpack to at most 16 MiB, and it unpacks to more than that", SHRINK,
                 id="an xz bomb: 512 MiB of zeros in 4 MiB members"),
    pytest.param(lambda: bomb("gzip", members=1, size_each=512 * MIB),
                 "may unpack to at most 16 MiB, and its files declare 512.0 MiB by 'data/0.bin'", SHRINK,
                 id="a 510 KiB gzip declaring 512 MiB"),
    pytest.param(lambda: pax_bomb(1024 * MIB), "may unpack to at most 16 MiB, and it unpacks to more than that",
                 SHRINK, id="a pax header of 1 GiB, which tarfile would read whole"),
    pytest.param(lambda: gzip.compress(tar_of(*[(f"f{i}.tf", b"x") for i in range(10_000)])),
                 f"it holds more than {MAX_MEMBERS} files and directories (the limit)", SHRINK,
                 id="10,000 tiny members"),
    pytest.param(lambda: tar_of(("main.tf", b"a"), ("./main.tf", b"b")), "'main.tf' appears twice",
                 "appliance templates push DIR", id="a duplicate name, spelled differently"),
    pytest.param(lambda: tar_of(("modules", b"x"), ("modules/main.tf", b"")), "'modules/main.tf' is inside 'modules', "
                 "which is a file", "appliance templates push DIR", id="a file inside a file"),
    pytest.param(lambda: tar_of(("d/" * MAX_PATH_DEPTH + "main.tf", b"")),
                 f"is {MAX_PATH_DEPTH + 1} levels deep; the limit is {MAX_PATH_DEPTH}", "Flatten",
                 id="a path deeper than the limit"),
]


@pytest.mark.security(finding=8)
@pytest.mark.parametrize(("build", "message", "hint"), HOSTILE)
def test_a_hostile_archive_is_refused_with_the_limit_and_the_way_out(build: Callable[[], bytes], message: str,
                                                                     hint: str) -> None:
    with pytest.raises(ArchiveRefused) as refused:
        check_archive(build())
    assert refused.value.message.startswith("The template archive is refused: ")
    assert message in refused.value.message
    assert hint in refused.value.hint


@pytest.mark.security(finding=8)
def test_the_daemon_refuses_a_bomb_before_writing_anything(tmp_path: Path) -> None:
    with pytest.raises(tarfile.TarError, match="may unpack to at most 16 MiB"):
        unpack_template(bomb("bz2", members=4, size_each=8 * MIB), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["gzip", "bz2", "xz"])
def test_a_compressed_template_within_the_limits_unpacks(kind: str, tmp_path: Path) -> None:
    archive = bomb(kind, members=2, size_each=4 * MIB)
    assert check_archive(archive) == ["main.tf", "data/0.bin", "data/1.bin"]
    unpack_template(archive, tmp_path)
    assert (tmp_path / "data" / "1.bin").stat().st_size == 4 * MIB
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o755


def test_a_template_at_the_limits_is_accepted() -> None:
    deep = "d/" * (MAX_PATH_DEPTH - 1) + "main.tf"
    files = [(deep, b"")] + [(f"f{i}.tf", b"x") for i in range(MAX_MEMBERS - 1)]
    assert len(check_archive(tar_of(*files))) == MAX_MEMBERS
