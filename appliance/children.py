"""Child processes that die with their parent: the kernel's parent-death signal (Linux prctl)."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: signal.Signals) -> Callable[[], None]:
    """A preexec_fn that asks the kernel to send `sig` to the child when the server dies, even by SIGKILL.

    Set in the child after any uid/gid switch, so the setting survives the credential change.
    """
    def preexec() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, sig)
    return preexec
