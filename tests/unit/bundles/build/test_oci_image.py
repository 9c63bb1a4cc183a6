"""The layer and OCI JSON writer: the same tree gives the same digests whatever its mtimes and owner names."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from bundles.build.oci_image import MEDIA_MANIFEST, REF_NAME, ImageConfig, write_layer, write_layout

CONFIG = ImageConfig(user="dev", env=("LANG=C.UTF-8",), cmd=("/bin/bash",), working_dir="/home/dev")
CREATED = datetime(2026, 6, 1, tzinfo=UTC)


def _tree(root: Path, mtime: int) -> Path:
    for name in ("b/z", "b/a", "a", "b/ä", "tmp/leftover", "dev/junk"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    os.link(root / "a", root / "b/hard")
    (root / "link").symlink_to("b/z")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def _layer(root: Path) -> tuple[bytes, str, str]:
    out = io.BytesIO()
    descriptor, diff_id = write_layer(root, out, int(CREATED.timestamp()))
    return out.getvalue(), descriptor.digest, diff_id


def test_the_same_tree_gives_the_same_digests_whatever_its_mtimes(tmp_path: Path) -> None:
    one = _layer(_tree(tmp_path / "one", 1_000_000))
    two = _layer(_tree(tmp_path / "two", 2_000_000))
    assert one[1:] == two[1:]
    assert one[0] == two[0]


def test_entries_are_sorted_normalised_and_emptied_folders_kept_empty(tmp_path: Path) -> None:
    data, _, _ = _layer(_tree(tmp_path / "root", 1_000_000))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a", "b", "b/a", "b/hard", "b/z", "b/ä", "dev", "link", "tmp"]
    assert {m.mtime for m in members} == {int(CREATED.timestamp())}
    assert {(m.uname, m.gname) for m in members} == {("", "")}
    hard = next(m for m in members if m.name == "b/hard")
    assert hard.islnk() and hard.linkname == "a"


def test_the_layout_has_an_index_naming_the_tag_and_blobs_named_by_digest(tmp_path: Path) -> None:
    manifest = write_layout(_tree(tmp_path / "root", 1), tmp_path / "out", config=CONFIG, architecture="amd64",
                            created=CREATED, tag="t1", created_by="test")
    index = json.loads((tmp_path / "out/index.json").read_text())
    assert index["manifests"] == [{"mediaType": MEDIA_MANIFEST, "digest": manifest.digest, "size": manifest.size,
                                   "annotations": {REF_NAME: "t1"}}]
    assert json.loads((tmp_path / "out/oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    blobs = tmp_path / "out/blobs/sha256"
    assert not list(blobs.glob("*.partial"))
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.name for p in blobs.iterdir())
