"""An SBOM's components and the diff between two releases, as the Releases page lists them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from appliance.releases import components, sbom_diff
from appliance.sdk.releases import Component, ComponentChange, ReleaseRecord


def _bom(*items: Any) -> dict[str, Any]:
    return {"bomFormat": "CycloneDX", "components": list(items)}


def test_components_are_named_by_group_and_name_and_skip_what_is_not_a_component() -> None:
    found = components(_bom({"group": "org.example", "name": "lib", "version": "1"}, {"name": "zlib"},
                            "not-a-component", {"version": "2"}))
    assert found == [Component(name="org.example/lib", version="1"), Component(name="zlib", version="")]
    assert components(None) == [] and components({"components": None}) == []


def test_the_diff_names_added_removed_and_changed_components() -> None:
    old = components(_bom({"name": "a", "version": "1"}, {"name": "b", "version": "1"}, {"name": "c", "version": "1"}))
    new = components(_bom({"name": "a", "version": "1"}, {"name": "b", "version": "2"}, {"name": "d", "version": "1"}))
    assert sbom_diff(old, new) == {"added": [Component(name="d", version="1")],
                                   "removed": [Component(name="c", version="1")],
                                   "changed": [ComponentChange(name="b", old_version="1", new_version="2")]}


@pytest.mark.parametrize(("field", "value"), [("to_version", "v1"), ("started_at", "2026-01-01T10:00:00"),
                                               ("manifest_sha256", "xyz"), ("kind", "reinstall")])
def test_a_receipt_refuses_what_the_floor_or_history_could_not_use(field: str, value: str) -> None:
    receipt = {"kind": "install", "to_version": "1.0.0", "outcome": "succeeded", "actor": "root",
               "started_at": "2026-01-01T10:00:00+00:00", "finished_at": "2026-01-01T10:01:00+00:00"}
    ReleaseRecord.model_validate(receipt)
    with pytest.raises(ValidationError) as err:
        ReleaseRecord.model_validate(receipt | {field: value})
    assert err.value.errors()[0]["loc"] == (field,)
