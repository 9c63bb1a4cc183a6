"""Host facts for a scrape: the newest complete backup from its manifest, the bundle's expiry from the receipt."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from appliance.metrics.host import backups, bundle, last_backup

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _backup(root: Path, name: str, manifest: object) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "manifest.json").write_text(json.dumps(manifest))


def test_the_newest_complete_backup_counts_and_damaged_or_unfinished_ones_do_not(tmp_path: Path) -> None:
    _backup(tmp_path, "20260530", {"created_at": "2026-05-30T02:00:00Z"})
    _backup(tmp_path, "20260531", {"created_at": "2026-05-31T02:00:00Z"})
    _backup(tmp_path, "damaged", {"created_at": "yesterday"})
    _backup(tmp_path, ".partial-20260601", {"created_at": "2026-06-01T00:00:00Z"})  # still being written
    (tmp_path / "no-manifest").mkdir()
    assert last_backup(tmp_path) == datetime(2026, 5, 31, 2, tzinfo=UTC)
    families = {f.name: f.samples[0].value for f in backups(tmp_path, NOW)}
    assert families["appliance_backup_age_seconds"] == 22 * 3600


def test_no_backup_and_no_receipt_leave_their_series_out(tmp_path: Path) -> None:
    assert list(backups(tmp_path / "missing", NOW)) == []
    assert list(backups(tmp_path, NOW)) == []
    assert list(bundle(tmp_path / "receipts" / "latest.json", NOW)) == []


def test_the_bundle_expiry_is_read_from_the_installers_latest_receipt(tmp_path: Path) -> None:
    receipt = tmp_path / "latest.json"
    receipt.write_text(json.dumps({"version": "1.2.0", "expires_at": "2026-06-11T00:00:00Z"}))
    [family] = bundle(receipt, NOW)
    assert family.name == "appliance_bundle_expiry_seconds"
    assert family.samples[0].value == 10 * 86400
