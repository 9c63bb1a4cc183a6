"""The one operator error type and the one click group that prints it."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from appliance.errors import ConfigError
from appliance.errors import OperatorError as ApplianceOperatorError
from bundles.errors import BundleError, BundleRejected
from installer.config import InstallConfig
from installer.errors import InstallError
from installer.install import InstallOptions, install
from installer.paths import HostPaths
from installer.preflight import HostProbe
from installer.ui import ConsoleUi
from mirror.errors import MirrorError
from operator_errors import OperatorError, exit_code_of
from operator_errors.cli import Group, debug_option


def _tool(error: OperatorError) -> click.Group:
    @click.group(cls=Group)
    @debug_option
    def tool() -> None:
        """A root command like the project's three."""

    @tool.group()
    def noun() -> None:
        """A nested group, as `appliance pki issue` is."""

    @noun.command()
    def verb() -> None:
        raise error

    return tool


def _run(error: OperatorError, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(_tool(error), [*args, "noun", "verb"], env={"APPLIANCE_DEBUG": None, **(env or {})})


@pytest.mark.parametrize("error", [
    ApplianceOperatorError("x"), ConfigError("x"), BundleError("x"), BundleRejected("rule", "x"), InstallError("x"),
    MirrorError("x"),
], ids=["appliance's", "a config error", "a bundle error", "a rejected bundle", "an install error", "a mirror error"])
def test_every_operator_failure_is_the_one_type(error: Exception) -> None:
    assert isinstance(error, OperatorError)


def test_an_error_prints_message_and_hint_on_stderr_and_exits_1_without_a_traceback() -> None:
    result = _run(OperatorError("The CA key at /var/lib/x is unreadable.", "Run 'appliance pki init'."))
    assert result.exit_code == 1
    assert result.stderr == "error: The CA key at /var/lib/x is unreadable.\nhint: Run 'appliance pki init'.\n"
    assert result.stdout == ""


def test_an_error_without_a_hint_prints_only_the_message() -> None:
    assert _run(MirrorError("No providers in /srv/empty.")).stderr == "error: No providers in /srv/empty.\n"


def test_a_rejected_bundle_exits_3() -> None:
    result = _run(BundleRejected("hash-mismatch", "sha256 differs.", member="debs/nginx.deb"))
    assert result.exit_code == 3
    assert "error: Bundle rejected (hash-mismatch): member debs/nginx.deb: sha256 differs." in result.stderr
    assert "hint: Do not install it." in result.stderr


def test_an_error_raised_from_a_rejection_keeps_exit_code_3() -> None:
    try:
        try:
            raise BundleRejected("expired", "this bundle expired on 2026-01-01.")
        except BundleRejected as rejected:
            raise InstallError(rejected.message, rejected.hint, step="Verify bundle") from rejected
    except InstallError as wrapped:
        assert exit_code_of(wrapped) == 3
    assert exit_code_of(InstallError("Preflight failed.")) == 1


@pytest.mark.parametrize(("args", "env"), [(["--debug"], {}), ([], {"APPLIANCE_DEBUG": "1"})],
                         ids=["--debug", "APPLIANCE_DEBUG=1, the older spelling"])
def test_debug_re_raises_the_error_for_its_traceback(args: list[str], env: dict[str, str]) -> None:
    error = BundleRejected("truncated", "the archive is cut short.")
    result = _run(error, *args, env=env)
    assert result.exception is error
    assert "error:" not in result.stderr


def test_an_installer_step_failing_on_a_rejected_bundle_exits_3(tmp_path: Path) -> None:
    bundle, keyring = tmp_path / "junk.bundle", tmp_path / "keys.gpg"
    bundle.write_bytes(b"not a tar archive" * 100)
    keyring.write_bytes(b"not a key")
    options = InstallOptions(bundle, InstallConfig(hostname="appliance.test"), keyring)
    ui = ConsoleUi(Console(file=io.StringIO()))
    with pytest.raises(InstallError, match=r"^Verify bundle: Bundle rejected \(truncated\)") as caught:
        install(options, HostPaths(tmp_path / "host"), HostProbe(), ui)
    assert exit_code_of(caught.value) == 3
    assert not (tmp_path / "host").exists()  # nothing on the host changed
