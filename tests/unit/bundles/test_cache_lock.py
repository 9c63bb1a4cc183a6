"""bundles.build.cache_lock: a second builder of a cache folder waits until the first is done."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bundles.build.cache_lock import building


def test_a_second_builder_enters_only_after_the_first_left(tmp_path: Path) -> None:
    events: list[str] = []
    first_inside, second_started = threading.Event(), threading.Event()

    def first() -> None:
        with building(tmp_path / "images"):
            events.append("first in")
            first_inside.set()
            second_started.wait(10)
            time.sleep(0.3)  # room for the second builder to get in, were the lock not held
            events.append("first out")

    def second() -> None:
        first_inside.wait(10)
        second_started.set()
        with building(tmp_path / "images"):
            events.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert events == ["first in", "first out", "second in"]
    assert (tmp_path / "images" / ".lock").is_file()
