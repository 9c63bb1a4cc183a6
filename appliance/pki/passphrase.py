"""Where the root key's passphrase comes from: a file, APPLIANCE_PKI_PASSPHRASE, or a prompt."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from appliance.pki.keys import PkiError

ENV_VAR = "APPLIANCE_PKI_PASSPHRASE"
Prompt = Callable[[bool], str]


def read_passphrase(file: Path | None, *, prompt: Prompt | None, confirm: bool = False) -> bytes:
    """The passphrase from --passphrase-file, else the environment, else the terminal."""
    if file is not None:
        try:
            text = file.read_text().rstrip("\r\n")
        except OSError as err:
            raise PkiError(f"Cannot read passphrase file {file}: {err.strerror}.",
                           "Check the path and its permissions.") from err
        if not text:
            raise PkiError(f"Passphrase file {file} is empty.", "Put the passphrase on its first line.")
        return text.encode()
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return from_env.encode()
    if prompt is None or not sys.stdin.isatty():
        raise PkiError("The root key passphrase is needed and none was given.",
                       f"Pass --passphrase-file FILE, set {ENV_VAR}, or run in a terminal to be prompted.")
    return prompt(confirm).encode()
