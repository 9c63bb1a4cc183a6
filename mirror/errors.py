"""Mirror failures, naming the file and what to do."""

from __future__ import annotations

from bundles.errors import BundleError


class MirrorError(BundleError):
    """A mirror operation failed; nothing in the existing tree was changed."""
