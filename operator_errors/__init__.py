"""The one error type for operator-facing failures: message, hint and exit code.

A leaf module (standard library only) so that appliance, bundles, mirror and the installer
all raise the same type, and bundles' verifier can import it without importing appliance.
Library code raises; only the CLI group in operator_errors.cli prints and exits.
"""

from __future__ import annotations

from typing import ClassVar


class OperatorError(Exception):
    """A failure an operator can fix: what failed, on which value (message), what to do next (hint)."""

    exit_code: ClassVar[int] = 1  # what the command exits with; subclasses set their own (3: bundle rejected)

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


def exit_code_of(err: OperatorError) -> int:
    """The exit code for err; an error with the default code raised from another keeps the cause's.

    So an installer step that fails because the bundle was rejected still exits 3, as the
    bundle tool does, and scripts can tell "do not install this" from any other failure.
    """
    cause = err.__cause__
    if err.exit_code == OperatorError.exit_code and isinstance(cause, OperatorError):
        return exit_code_of(cause)
    return err.exit_code
