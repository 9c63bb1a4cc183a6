"""Image sources checked before a copy: a sound OCI layout passes; each kind of damage names its file."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from appliance.errors import OperatorError
from appliance.registry.layouts import image_source


def _blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layout(root: Path) -> tuple[Path, dict[str, object]]:
    layout = root / "image"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = _blob(layout, b'{"architecture": "amd64", "os": "linux"}')
    layer = _blob(layout, b"layer bytes" * 100)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config, "layers": [layer]}
    entry = {**_blob(layout, json.dumps(manifest).encode()), "mediaType": manifest["mediaType"],
             "annotations": {"org.opencontainers.image.ref.name": "debian-12"}}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    return layout, layer


def test_a_sound_layout_is_copied_by_its_ref(tmp_path: Path) -> None:
    layout, _ = _layout(tmp_path)
    source = image_source(layout)
    assert source.transport == f"oci:{layout}:debian-12"
    assert source.default_name == "debian-12" and source.blobs == 3


def _break_layer(layout: Path, layer: dict[str, object]) -> Path:
    path = layout / "blobs" / "sha256" / str(layer["digest"]).removeprefix("sha256:")
    path.write_bytes(b"short")
    return path


def _drop_index(layout: Path, layer: dict[str, object]) -> Path:
    (layout / "index.json").unlink()
    return layout / "index.json"


def _garble_index(layout: Path, layer: dict[str, object]) -> Path:
    (layout / "index.json").write_text("{not json")
    return layout / "index.json"


def _tamper_manifest(layout: Path, layer: dict[str, object]) -> Path:
    index = json.loads((layout / "index.json").read_text())
    path = layout / "blobs" / "sha256" / index["manifests"][0]["digest"].removeprefix("sha256:")
    path.write_bytes(path.read_bytes()[:-1] + b" ")  # same size, other content
    return path


@pytest.mark.parametrize("damage", [_break_layer, _drop_index, _garble_index, _tamper_manifest],
                         ids=["a truncated layer", "a missing index.json", "an index that is not JSON",
                              "a manifest whose bytes do not match its digest"])
def test_damage_is_an_operator_error_naming_the_file(tmp_path: Path, damage: object) -> None:
    layout, layer = _layout(tmp_path)
    broken = damage(layout, layer)  # type: ignore[operator]
    with pytest.raises(OperatorError) as caught:
        image_source(layout)
    assert str(broken) in caught.value.message and "Corrupt image" in caught.value.message


def test_a_docker_archive_without_its_layers_names_the_archive(tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        data = json.dumps([{"Config": "c.json", "RepoTags": ["team/app:1"], "Layers": ["l/layer.tar"]}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(OperatorError) as caught:
        image_source(archive)
    assert str(archive) in caught.value.message and "'c.json'" in caught.value.message
