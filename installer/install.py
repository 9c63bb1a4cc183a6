"""`appliance-installer install`: verify -> preflight -> extract -> secrets -> playbooks -> health -> summary.

Nothing on the host changes before verification and preflight pass. Each later step is
idempotent, so after a failure the same command converges from where it stopped. The bundle is
opened once: extraction reads the file verification read, verifies it again with the same policy
(anti-rollback floor included) and refuses a manifest other than the one verified
([docs/adr/0011](../docs/adr/0011-verify-and-extract-in-one-pass.md)).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from bundles.errors import BundleError
from bundles.verify import TrustPolicy, VerifiedBundle, open_bundle, verify_bundle
from installer.ansible_runner import PlaybookResult, ansible_environment, run_playbook
from installer.config import InstallConfig
from installer.errors import InstallError
from installer.health import https_healthz, root_fingerprint, settled_unit_states
from installer.journal import fsync_dir
from installer.keys import pin_rotated_keys, read_downgrade_authorization
from installer.paths import HostPaths
from installer.preflight import Check, HostProbe, run_preflight
from installer.ui import Ui

MANIFEST_DIGEST_FILE = ".manifest.sha256"


@dataclass(frozen=True)
class InstallOptions:
    bundle: Path
    config: InstallConfig
    keyring: Path | None = None
    ignored_checks: frozenset[str] = frozenset()
    accept_expired: str | None = None
    downgrade_authorization: Path | None = None  # signed permission to go below the installed version


@dataclass(frozen=True)
class InstallSummary:
    version: str
    access_url: str
    fingerprint: str
    setup_link: str | None
    changed: int
    seconds: float
    log: Path


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def trusted_keyring(given: Path | None, paths: HostPaths) -> bytes:
    """The pinned keyring; on first install the one given with --keyring, which is then pinned."""
    pinned = paths.trusted_keys.read_bytes() if paths.trusted_keys.exists() else None
    offered = None
    if given is not None:
        try:
            offered = given.read_bytes()
        except OSError as err:
            raise InstallError(f"Cannot read the keyring {given}: {err.strerror}.", "Check the --keyring path.") \
                from err
    if pinned is not None and offered is not None and offered != pinned:
        raise InstallError(f"--keyring {given} differs from the keys this host already trusts ({paths.trusted_keys}).",
                           "Release key rotation is done by a signed bundle, not on the command line; "
                           "drop --keyring to use the pinned keys.")
    keyring = pinned or offered
    if keyring is None:
        raise InstallError("No trusted release keys: this is a first install and --keyring was not given.",
                           "Pass --keyring FILE with the release public key, compared out of band.")
    return keyring


def verify(bundle: BinaryIO, options: InstallOptions, paths: HostPaths, ui: Ui) -> tuple[VerifiedBundle, TrustPolicy]:
    """The verified bundle and the policy it passed, which extraction applies again."""
    policy = TrustPolicy(trusted_keyring(options.keyring, paths), threshold=options.config.signature_threshold,
                         installed_version=paths.installed_version(), accept_expired_reason=options.accept_expired,
                         downgrade_authorization=read_downgrade_authorization(options.downgrade_authorization))
    with ui.byte_progress("verifying", os.fstat(bundle.fileno()).st_size) as advance:
        return verify_bundle(bundle, policy, progress=advance), policy


def preflight(result: VerifiedBundle, options: InstallOptions, paths: HostPaths, probe: HostProbe,
              ui: Ui) -> list[Check]:
    checks = run_preflight(result.manifest, options.config, paths, probe, options.ignored_checks)
    ui.checks(checks)
    blocking = [c for c in checks if c.is_blocking]
    if blocking:
        names = ", ".join(c.name for c in blocking)
        raise InstallError(f"{len(blocking)} blocking check(s) failed ({names}); nothing was changed.",
                           "Fix them as shown, or override one with --ignore-preflight NAME (recorded).",
                           step="Preflight")
    record_overrides([c for c in checks if c.ignored], result.manifest.version, paths)
    return checks


def record_overrides(overridden: list[Check], version: str, paths: HostPaths) -> None:
    """Written before anything changes, so an override is on record even if the install fails later."""
    if not overridden:
        return
    paths.installer_state.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with paths.overrides.open("a") as log:
        for check in overridden:
            log.write(json.dumps({"time": now, "version": version, "check": check.name,
                                  "message": check.message}) + "\n")


def extract(bundle: BinaryIO, result: VerifiedBundle, policy: TrustPolicy, paths: HostPaths, ui: Ui) -> Path:
    """Unpack the verified bundle, make it current and pin the keys it was verified with."""
    release = unpack_release(bundle, result, policy, paths, ui)
    switch_current(paths, release)
    if not paths.trusted_keys.exists():
        _write_private(paths.trusted_keys, policy.keyring, 0o644)
    return release


def unpack_release(bundle: BinaryIO, result: VerifiedBundle, policy: TrustPolicy, paths: HostPaths, ui: Ui) -> Path:
    """releases/VERSION from the verified bundle, checking every byte again as it is written; refuse if it changed.

    Idempotent: a release folder already holding this manifest is kept as it is.
    """
    release = paths.release(result.manifest.version)
    digest_file = release / MANIFEST_DIGEST_FILE
    if digest_file.exists() and digest_file.read_text().strip() == result.manifest_sha256:
        ui.info(f"    {release} already holds this bundle")
        return release
    paths.releases.mkdir(parents=True, exist_ok=True)
    fresh = release.with_name(f".{release.name}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    with ui.byte_progress("extracting", os.fstat(bundle.fileno()).st_size) as advance:
        extracted = verify_bundle(bundle, policy, extract_to=fresh, progress=advance,
                                  manifest_sha256=result.manifest_sha256)
    (fresh / MANIFEST_DIGEST_FILE).write_text(extracted.manifest_sha256 + "\n")
    if release.exists():
        shutil.rmtree(release)
    fresh.rename(release)
    fsync_dir(paths.releases)
    return release


def switch_current(paths: HostPaths, release: Path) -> None:
    """Point `current` at release in one rename, durable before this returns (a crash leaves old or new)."""
    link = paths.current.with_name(".current.new")
    link.unlink(missing_ok=True)
    link.symlink_to(release.relative_to(paths.opt))
    link.replace(paths.current)
    fsync_dir(paths.opt)


def ensure_secrets(config: InstallConfig, paths: HostPaths) -> dict[str, str]:
    """Generated once, root-only; the playbooks read them and never log them."""
    files = {"postgres": paths.secrets / "postgres-password", "pki": paths.secrets / "pki-passphrase",
             "provisioner": paths.secrets / "provisioner-psk"}
    for path in files.values():
        if not path.exists():
            _write_private(path, secrets.token_urlsafe(32).encode() + b"\n")
    if config.pki_passphrase_file is not None:
        files["pki"] = config.pki_passphrase_file
    return {name: str(path) for name, path in files.items()}


def playbook_vars(version: str, config: InstallConfig, release: Path, secret_files: dict[str, str],
                  paths: HostPaths) -> Path:
    variables: dict[str, Any] = {
        "appliance_version": version,
        "appliance_release_dir": str(release),
        "appliance_current_dir": str(paths.current),
        "appliance_hostname": config.hostname,
        "appliance_access_url": config.access_url,
        "appliance_https_port": config.https_port,
        "appliance_http_port": config.http_port,
        "appliance_extra_dns": list(config.extra_dns),
        "appliance_extra_ips": list(config.extra_ips),
        "appliance_postgres_password_file": secret_files["postgres"],
        "appliance_pki_passphrase_file": secret_files["pki"],
        "appliance_provisioner_psk_file": secret_files["provisioner"],
        # Not used by a role: kept so that an upgrade reads back the settings this host was installed with.
        "appliance_signature_threshold": config.signature_threshold,
    }
    path = paths.installer_state / "vars.json"
    _write_private(path, json.dumps(variables, indent=1).encode())
    return path


def converge(release: Path, vars_file: Path, paths: HostPaths, ui: Ui) -> PlaybookResult:
    playbooks = release / "playbooks"
    env = ansible_environment(paths.installer_state, playbooks)
    outcome = run_playbook(playbooks / "site.yml", vars_file, paths.log, env, on_task=ui.task)
    if outcome.returncode != 0:
        where = f"task '{outcome.failed_task}'" if outcome.failed_task else "ansible-playbook"
        raise InstallError(f"{where} failed: {outcome.failure or f'exit code {outcome.returncode}'}",
                           f"The full log is {paths.log}. Fix the cause and run the same install command again; "
                           "it converges from where it stopped.", step="Playbooks")
    return outcome


def check_health(config: InstallConfig, paths: HostPaths, settle: float = 60.0) -> None:
    """Every unit active within `settle` seconds, and /healthz answering over HTTPS."""
    down = [s for s in settled_unit_states(settle) if not s.is_active]
    if down:
        listed = ", ".join(f"{s.unit} ({s.state})" for s in down)
        raise InstallError(f"services not running: {listed}.",
                           f"Read why with: journalctl -u {down[0].unit} -n 50", step="Health checks")
    error = https_healthz(config.https_port, paths.ca_bundle)
    if error is not None:
        raise InstallError(f"the console did not answer over HTTPS: {error}.",
                           "Read: journalctl -u appliance-console -u nginx -n 50", step="Health checks")


def setup_link(paths: HostPaths) -> str | None:
    """A one-time first-user link, or None when the first user already exists."""
    result = subprocess.run([str(paths.current / "venv/bin/appliance"), "setup-link"], capture_output=True,
                            text=True, check=False, env={**os.environ, "APPLIANCE_CONFIG": str(paths.config)})
    if result.returncode == 0:
        return result.stdout.strip()
    if "first user already exists" in result.stderr:
        return None
    raise InstallError(f"could not make the setup link: {result.stderr.strip()[-300:]}", step="Summary")


def record_receipt(result: VerifiedBundle, checks: list[Check], outcome: PlaybookResult, seconds: float,
                   paths: HostPaths, pinned: dict[str, Any] | None = None) -> None:
    receipt = {**result.receipt(), "installed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "preflight_overrides": [c.name for c in checks if c.ignored],
               "playbook_recap": outcome.recap, "seconds": round(seconds, 1), "keys_pinned": pinned}
    paths.receipts.mkdir(parents=True, exist_ok=True)
    body = json.dumps(receipt, indent=1).encode()
    _write_private(paths.receipts / f"{result.manifest.version}-{int(time.time())}.json", body, 0o644)
    _write_private(paths.receipts / "latest.json", body, 0o644)


def install(options: InstallOptions, paths: HostPaths, probe: HostProbe, ui: Ui) -> InstallSummary:
    started = time.monotonic()
    with _bundle_step("Verify bundle"):
        bundle = open_bundle(options.bundle)
    with bundle:  # one open file for both reads: replacing the path in between changes nothing
        with ui.step("Verify bundle"), _bundle_step("Verify bundle"):
            result, policy = verify(bundle, options, paths, ui)
        with ui.step("Preflight"):
            checks = preflight(result, options, paths, probe, ui)
        with ui.step(f"Extract release {result.manifest.version}"), _bundle_step("Extract release"):
            release = extract(bundle, result, policy, paths, ui)
    with ui.step("Run playbooks (full log in " + str(paths.log) + ")"):
        secret_files = ensure_secrets(options.config, paths)
        variables = playbook_vars(result.manifest.version, options.config, release, secret_files, paths)
        outcome = converge(release, variables, paths, ui)
    with ui.step("Health checks"):
        check_health(options.config, paths)
    pinned = pin_rotated_keys(result, paths)  # only now: a failed install keeps the old keys
    with ui.step("Summary"):
        link = setup_link(paths)
    seconds = time.monotonic() - started
    record_receipt(result, checks, outcome, seconds, paths, pinned)
    return InstallSummary(result.manifest.version, options.config.access_url, root_fingerprint(paths.ca_bundle), link,
                          outcome.changed, seconds, paths.log)


@contextmanager
def _bundle_step(step: str) -> Iterator[None]:
    """A bundle failure as the installer's, naming the step."""
    try:
        yield
    except BundleError as err:  # from err: a rejected bundle still exits 3 (operator_errors.exit_code_of)
        raise InstallError(err.message, err.hint, step=step) from err
