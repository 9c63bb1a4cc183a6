"""Installer failures: message, what to do next, and which step failed."""

from __future__ import annotations

from operator_errors import OperatorError


class InstallError(OperatorError):
    """The installer stopped; nothing after the failed step ran."""

    def __init__(self, message: str, hint: str = "", *, step: str | None = None) -> None:
        super().__init__(f"{step}: {message}" if step else message, hint)
        self.step = step
