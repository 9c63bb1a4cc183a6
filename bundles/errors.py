"""Bundle failures: every rejection names the member and the rule it broke."""

from __future__ import annotations

from operator_errors import OperatorError


class BundleError(OperatorError):
    """A bundle operation failed; message says what, hint says what to do next."""


class BundleRejected(BundleError):
    """Verification failed closed. `rule` is a stable name for the check that failed."""

    exit_code = 3  # scripts tell "do not install this bundle" from any other failure

    def __init__(self, rule: str, message: str, hint: str = "", *, member: str | None = None) -> None:
        text = f"Bundle rejected ({rule}): {message}" if member is None else \
            f"Bundle rejected ({rule}): member {member}: {message}"
        super().__init__(text, hint or "Do not install it. Copy the bundle again from the release media, "
                                       "then run 'appliance-bundle verify'.")
        self.rule = rule
        self.member = member
        self.detail = message  # without the "Bundle rejected (rule)" prefix, for a caller that rewraps it
