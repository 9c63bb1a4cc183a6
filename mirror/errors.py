"""Mirror failures, naming the file and what to do."""

from __future__ import annotations

from operator_errors import OperatorError


class MirrorError(OperatorError):
    """A mirror operation failed; nothing in the existing tree was changed."""
