"""A script's output as the lines the control plane stores: decoded, split, cleaned of control codes, bounded."""

from __future__ import annotations

import re

from appliance.sdk.agents import MAX_LOG_LINE_CHARS

# Terminal escape sequences (colours, cursor moves) and every control character the API refuses in text.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def clean(text: str, limit: int = MAX_LOG_LINE_CHARS) -> str:
    """`text` without escape sequences or control characters (tabs and line breaks stay), cut to `limit`."""
    # A carriage return redraws the line (progress bars): what a terminal would end up showing is the last part.
    shown = "\n".join(part.rsplit("\r", 1)[-1] if part.rstrip("\r") else "" for part in text.split("\n"))
    return _CONTROL.sub("", _ESCAPES.sub("", shown))[:limit]


class LineSplitter:
    """Bytes in, whole lines out; a line longer than the limit is cut into several."""

    def __init__(self, limit: int = MAX_LOG_LINE_CHARS) -> None:
        self._limit = limit
        self._pending = b""

    def feed(self, chunk: bytes) -> list[str]:
        *whole, self._pending = (self._pending + chunk).split(b"\n")
        lines = [clean(raw.decode("utf-8", "replace"), limit=1 << 20) for raw in whole]
        if len(self._pending) > 4 * self._limit:  # a runaway line without a newline: emit what we have
            lines.append(clean(self._pending.decode("utf-8", "replace"), limit=1 << 20))
            self._pending = b""
        return [piece for line in lines for piece in self._cut(line)]

    def close(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return self._cut(clean(rest.decode("utf-8", "replace"), limit=1 << 20)) if rest else []

    def _cut(self, line: str) -> list[str]:
        return [line[i:i + self._limit] for i in range(0, len(line), self._limit)] or [""]
