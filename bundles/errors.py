"""Bundle failures: every rejection names the member and the rule it broke."""

from __future__ import annotations


class BundleError(Exception):
    """A bundle operation failed; message says what, hint says what to do next."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class BundleRejected(BundleError):
    """Verification failed closed. `rule` is a stable name for the check that failed."""

    def __init__(self, rule: str, message: str, hint: str = "", *, member: str | None = None) -> None:
        text = f"Bundle rejected ({rule}): {message}" if member is None else \
            f"Bundle rejected ({rule}): member {member}: {message}"
        super().__init__(text, hint or "Do not install it. Copy the bundle again from the release media, "
                                       "then run 'appliance-bundle verify'.")
        self.rule = rule
        self.member = member
