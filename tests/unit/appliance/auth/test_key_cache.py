"""The token cache: a hit skips the database, and anything that could make the hit wrong sends it back there."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from appliance.auth import tokens
from appliance.auth.apikeys import ApiKey, Authenticated
from appliance.auth.key_cache import KeyCache
from appliance.auth.revocations import RevocationEpoch
from appliance.auth.users import User

TOKEN = str(tokens.new_token())


def _auth(expires_in: timedelta = timedelta(hours=1)) -> Authenticated:
    now = datetime.now(UTC)
    user = User(**dict.fromkeys(User.__dataclass_fields__))
    user = replace(user, id=uuid4(), username="ada", roles=[], status="active")
    key = ApiKey(id=TOKEN[:10], user_id=user.id, login_type="password", token_name=None, scope="all",
                 lifetime_seconds=3600, created_at=now, expires_at=now + expires_in, last_used_at=None,
                 revoked_at=None)
    return Authenticated(user.subject(key.id), key, user)


class Loads:
    """The database check a cache miss runs: counts its calls and returns what it is given."""

    def __init__(self, auth: Authenticated) -> None:
        self.auth, self.count = auth, 0

    def __call__(self) -> Authenticated:
        self.count += 1
        return self.auth


@pytest.fixture
def epoch(tmp_path: Path) -> RevocationEpoch:
    return RevocationEpoch(tmp_path / "auth-epoch")


def test_a_second_request_with_the_same_token_skips_the_database(epoch: RevocationEpoch) -> None:
    cache, load = KeyCache(epoch), Loads(_auth())
    assert cache.authenticate(TOKEN, load) is cache.authenticate(TOKEN, load)
    assert load.count == 1


def test_a_revocation_anywhere_sends_every_token_back_to_the_database(epoch: RevocationEpoch) -> None:
    cache, load = KeyCache(epoch), Loads(_auth())
    cache.authenticate(TOKEN, load)
    epoch.bump()
    cache.authenticate(TOKEN, load)
    cache.authenticate(TOKEN, load)
    assert load.count == 2


def test_the_same_key_id_with_another_secret_is_checked_by_the_database(epoch: RevocationEpoch) -> None:
    cache, load = KeyCache(epoch), Loads(_auth())
    cache.authenticate(TOKEN, load)
    forged = TOKEN[:11] + ("A" if TOKEN[11] != "A" else "B") + TOKEN[12:]
    cache.authenticate(forged, load)
    assert load.count == 2


def test_an_expired_key_or_an_old_entry_is_checked_again(epoch: RevocationEpoch) -> None:
    expired = Loads(_auth(expires_in=timedelta(seconds=-1)))
    cache = KeyCache(epoch)
    cache.authenticate(TOKEN, expired)
    cache.authenticate(TOKEN, expired)
    assert expired.count == 2
    old, load = KeyCache(epoch, ttl=0.0), Loads(_auth())
    old.authenticate(TOKEN, load)
    old.authenticate(TOKEN, load)
    assert load.count == 2


def test_a_refused_token_is_not_cached(epoch: RevocationEpoch) -> None:
    cache, calls = KeyCache(epoch), []

    def refuse() -> Authenticated:
        calls.append(1)
        raise PermissionError("revoked")

    for _ in range(2):
        with pytest.raises(PermissionError):
            cache.authenticate(TOKEN, refuse)
    assert len(calls) == 2


def test_a_flood_of_distinct_tokens_keeps_the_cache_bounded(epoch: RevocationEpoch) -> None:
    cache = KeyCache(epoch, max_entries=3)
    for _ in range(10):
        token = str(tokens.new_token())
        cache.authenticate(token, Loads(_auth()))
    assert len(cache._entries) <= 3


def test_another_process_sees_a_bump_of_the_shared_epoch(epoch: RevocationEpoch) -> None:
    before = epoch.current()
    script = ("import sys; from pathlib import Path; from appliance.auth.revocations import RevocationEpoch; "
              "RevocationEpoch(Path(sys.argv[1])).bump()")
    subprocess.run([sys.executable, "-c", script, str(epoch.path)], check=True)
    assert epoch.current() == before + 1
    assert epoch.path.stat().st_mode & 0o777 == 0o600
