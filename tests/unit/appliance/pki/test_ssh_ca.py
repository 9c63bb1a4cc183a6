"""The SSH user CA key: made once, whoever asks first, even from many threads at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from appliance.pki.ssh_ca import ensure_ssh_user_ca


def test_first_requests_racing_in_one_process_all_get_the_same_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        lines = list(pool.map(lambda _: ensure_ssh_user_ca(tmp_path / "pki").public_line, range(16)))
    assert len(set(lines)) == 1
    assert not [p.name for p in (tmp_path / "pki").rglob("*.new")]
