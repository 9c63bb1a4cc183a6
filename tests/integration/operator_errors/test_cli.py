"""Each of the three commands as an operator runs them: message and hint, exit code, traceback only with --debug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(tool: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    clean["XDG_CONFIG_HOME"] = str(cwd / "config")  # no stored session
    return subprocess.run([sys.executable, "-m", tool, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**clean, **(env or {})}, check=False)


@pytest.fixture
def junk(tmp_path: Path) -> Path:
    """A file that is not a bundle, and a keyring that is not one either: rejected before keys are read."""
    (tmp_path / "junk.bundle").write_bytes(b"this is not a tar archive\n" * 200)
    (tmp_path / "keys.gpg").write_bytes(b"not a key")
    return tmp_path


def _assert_operator_error(result: subprocess.CompletedProcess[str], code: int, message: str, hint: str) -> None:
    assert result.returncode == code, result.stderr
    assert f"error: {message}" in result.stderr
    assert f"hint: {hint}" in result.stderr
    assert "Traceback" not in result.stderr


def _assert_traceback(result: subprocess.CompletedProcess[str], error_class: str) -> None:
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert error_class in result.stderr.splitlines()[-2]  # the last frame names the error; the hint follows
    assert "error: " not in result.stderr


def test_appliance_prints_message_and_hint_and_a_traceback_only_with_debug(tmp_path: Path) -> None:
    result = _run("appliance", "whoami", cwd=tmp_path)
    _assert_operator_error(result, 1, "You are not logged in.", "Run 'appliance login URL'")
    _assert_traceback(_run("appliance", "--debug", "whoami", cwd=tmp_path), "OperatorError: You are not logged in.")
    alias = _run("appliance", "whoami", cwd=tmp_path, env={"APPLIANCE_DEBUG": "1"})
    _assert_traceback(alias, "OperatorError: You are not logged in.")


def test_appliance_bundle_exits_3_for_a_rejected_bundle_and_1_for_other_errors(junk: Path) -> None:
    rejected = _run("bundles", "verify", "junk.bundle", "--keyring", "keys.gpg", cwd=junk)
    _assert_operator_error(rejected, 3, "Bundle rejected (truncated): the archive is damaged or cut short",
                           "Do not install it.")
    missing = _run("bundles", "verify", "junk.bundle", "--keyring", "absent.gpg", cwd=junk)
    _assert_operator_error(missing, 1, "Cannot read the trusted keyring absent.gpg", "Pass the release public key")
    debug = _run("bundles", "--debug", "verify", "junk.bundle", "--keyring", "keys.gpg", cwd=junk)
    _assert_traceback(debug, "bundles.errors.BundleRejected: Bundle rejected (truncated)")


def test_appliance_installer_exits_3_for_a_rejected_bundle_and_1_for_bad_settings(junk: Path) -> None:
    rejected = _run("installer", "preflight", "junk.bundle", "--keyring", "keys.gpg", cwd=junk)
    _assert_operator_error(rejected, 3, "Bundle rejected (truncated)", "Do not install it.")
    (junk / "install.toml").write_text("https_port = 70000\n")
    bad = _run("installer", "preflight", "junk.bundle", "--keyring", "keys.gpg", "--config", "install.toml", cwd=junk)
    _assert_operator_error(bad, 1, "Invalid install.toml key 'https_port': expected a port from 1 to 65535",
                           "Fix the install config")
    debug = _run("installer", "--debug", "preflight", "junk.bundle", "--keyring", "keys.gpg", cwd=junk)
    _assert_traceback(debug, "bundles.errors.BundleRejected: Bundle rejected (truncated)")
