"""Host facts for a scrape: the newest backup from the installer's summary, the bundle's expiry from the receipt."""

from __future__ import annotations

from datetime import UTC, datetime

from appliance.metrics.host import backups, bundle

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_newest_complete_backup_in_the_installers_summary_counts() -> None:
    summary = {"backups": [{"name": "a", "created_at": "2026-05-30T02:00:00Z"},
                           {"name": "b", "created_at": "2026-05-31T02:00:00Z"},
                           {"name": "damaged", "created_at": "yesterday"}, "not a backup"],
               "last_failure": {"at": "2026-06-01T00:00:00Z", "error": "disk full"}}
    families = {f.name: f.samples[0].value for f in backups(summary, NOW)}
    assert families["appliance_backup_age_seconds"] == 22 * 3600
    assert families["appliance_backup_last_success_timestamp_seconds"] == datetime(2026, 5, 31, 2,
                                                                                 tzinfo=UTC).timestamp()


def test_no_backup_and_no_receipt_leave_their_series_out() -> None:
    assert list(backups(None, NOW)) == []
    assert list(backups({"backups": []}, NOW)) == []
    assert list(bundle(None, NOW)) == []
    assert list(bundle({"expires_at": "soon"}, NOW)) == []


def test_the_bundle_expiry_is_read_from_the_installers_latest_receipt() -> None:
    [family] = bundle({"version": "1.2.0", "expires_at": "2026-06-11T00:00:00Z"}, NOW)
    assert family.name == "appliance_bundle_expiry_seconds"
    assert family.samples[0].value == 10 * 86400
