"""`appliance-bundle`: build, sign, verify, inspect and diff signed offline bundles."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from bundles.build.assemble import assemble, build_time
from bundles.build.base_image import DEFAULT_TAG, USER, build_base_image
from bundles.build.collect import collect
from bundles.build.release import check_built_wheel, release_version
from bundles.build.sbom import write_sbom
from bundles.downgrade import authorize, read_document, write_signed
from bundles.errors import BundleError
from bundles.inspect import diff_bundles, inspect_bundle
from bundles.recipe import load_recipe, with_overrides
from bundles.rotation import sign_keyring, signatures_path, stage_rotation
from bundles.signatures import export_public_key, generate_key, join_signatures, sign_manifest, split_signatures
from bundles.tarball import read_head, replace_signatures
from bundles.verify import TrustPolicy, verify_bundle
from operator_errors.cli import Group, debug_option

console = Console(stderr=True, highlight=False)


@contextmanager
def byte_progress(description: str, total: int) -> Iterator[Any]:
    """A bar with sizes, speed and ETA for long byte-wise work (writing, verifying)."""
    columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@debug_option
def cli() -> None:
    """Build, sign and verify the appliance's signed offline bundles."""


def _commit(root: Path) -> str:
    result = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=False)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


@cli.command()
@click.option("--recipe", type=click.Path(path_type=Path, dir_okay=False), default=Path("bundles/appliance.toml"),
              show_default=True)
@click.option("--version", "version", default=None,
              help="Expected release version: the build stops at once unless the appliance package (pyproject.toml, "
                   "or the wheel in --stage) has exactly this version [default: whatever it has].")
@click.option("--output", type=click.Path(path_type=Path, file_okay=False), default=Path("dist"), show_default=True)
@click.option("--stage", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Reuse artifacts already collected in this folder (skips the slow collection).")
@click.option("--keep-stage", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Collect into this folder and keep it, for later --stage builds.")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=Path(".cache/bundle"),
              show_default=True, help="Where the debootstrap baseline and build leftovers are kept.")
@click.option("--terraform", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="The terraform binary to ship (default: the recipe's, looked up on PATH).")
@click.option("--providers-from", multiple=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="More provider zips for the network mirror, laid out HOSTNAME/NAMESPACE/TYPE/.")
@click.option("--registry-from", multiple=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="More providers for the appliance's own registry, laid out NAMESPACE/TYPE/.")
@click.option("--rotate-keyring", type=click.Path(path_type=Path, dir_okay=False, exists=True), default=None,
              help="Carry this new release keyring (signed with 'appliance-bundle rotate-keys'): installers pin it "
                   "after installing this release.")
def build(recipe: Path, version: str | None, output: Path, stage: Path | None, keep_stage: Path | None,
          cache_dir: Path, terraform: Path | None, providers_from: tuple[Path, ...],
          registry_from: tuple[Path, ...], rotate_keyring: Path | None) -> None:
    """Collect every artifact of RECIPE for an offline Debian 12 host and write an unsigned bundle.

    The release version is the appliance package's own (pyproject.toml), the one its wheel, its
    provider and `appliance --version` carry; a different --version stops the build before any work.
    """
    spec = with_overrides(load_recipe(recipe), terraform=terraform, providers_from=providers_from,
                          registry_from=registry_from)
    release = release_version(spec.project, stage=stage, requested=version)
    created = build_time()
    is_temporary = stage is None and keep_stage is None
    work = Path(tempfile.mkdtemp(prefix="stage-", dir=_made(cache_dir))) if is_temporary else None
    target = stage or keep_stage or work
    assert target is not None
    try:
        if stage is None:
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                          console=console) as progress:
                task = progress.add_task("collecting", total=None)
                collect(spec, target, cache_dir.resolve(), version=release, created=created,
                        step=lambda text: progress.update(task, description=text))
            check_built_wheel(target, spec.project, release)
        if rotate_keyring is not None:
            stage_rotation(target, rotate_keyring)
        write_sbom(target, product=spec.product, version=release, created=created, tool_version=_tool_version())
        total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
        with byte_progress("writing bundle", total) as advance:
            out = assemble(target, output, version=release, created=created, expires_after=spec.expires_after,
                           min_upgrade_from=spec.min_upgrade_from, progress=advance,
                           build_info={"commit": _commit(spec.root), "builder": f"appliance-bundle {_tool_version()}"})
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    click.echo(f"Built {out} ({out.stat().st_size / 1e6:.1f} MB, unsigned).")
    click.echo(f"Next: appliance-bundle sign {out} --key <release key fingerprint>")


def _made(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tool_version() -> str:
    from importlib.metadata import version

    return version("appliance")


def _signing_options(func: Any) -> Any:
    """--key (repeatable) and --gnupghome, for every command that signs."""
    func = click.option("--gnupghome", type=click.Path(path_type=Path, file_okay=False), default=None,
                        help="GPG home holding the secret keys [default: GNUPGHOME or ~/.gnupg].")(func)
    return click.option("--key", "keys", multiple=True, required=True,
                        help="Fingerprint of a signing key (repeatable).")(func)


def _passphrase() -> str | None:
    return os.environ.get("APPLIANCE_BUNDLE_KEY_PASSPHRASE")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_signing_options
def sign(bundle: Path, keys: tuple[str, ...], gnupghome: Path | None) -> None:
    """Add detached GPG signatures over BUNDLE's manifest (keeps signatures already there)."""
    manifest, existing, _ = read_head(bundle)
    blocks = split_signatures(existing) if existing else []
    passphrase = _passphrase()
    for key in keys:
        blocks.append(sign_manifest(manifest, key, gnupghome, passphrase))
    replace_signatures(bundle, join_signatures(blocks))
    click.echo(f"Signed {bundle} with {len(keys)} key(s); it now carries {len(blocks)} signature(s).")


def _policy(keyring: Path, threshold: int, installed: str | None, accept_expired: str | None,
            downgrade: Path | None = None) -> TrustPolicy:
    return TrustPolicy.from_keyring_file(keyring, threshold=threshold, installed_version=installed,
                                         accept_expired_reason=accept_expired,
                                         downgrade_authorization=_read_file(downgrade) if downgrade else None)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise BundleError(f"Cannot read {path}: {err.strerror}.", "Check the path.") from err


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--keyring", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Public keys that may sign releases (ASCII-armored or binary).")
@click.option("--threshold", default=1, show_default=True, type=click.IntRange(1, 16),
              help="How many distinct trusted keys must have signed.")
@click.option("--installed-version", default=None, help="Refuse bundles older than this (anti-rollback).")
@click.option("--accept-expired", default=None, metavar="REASON",
              help="Accept an expired bundle because this host's clock is wrong; the reason is recorded.")
@click.option("--downgrade-authorization", "downgrade", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A signed authorization (appliance-bundle authorize-downgrade) to accept a bundle older than "
                   "--installed-version.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(bundle: Path, keyring: Path, threshold: int, installed_version: str | None, accept_expired: str | None,
           downgrade: Path | None, output: str) -> None:
    """Verify BUNDLE: trusted signatures, then every member's hash, failing closed (exit 3)."""
    policy = _policy(keyring, threshold, installed_version, accept_expired, downgrade)
    with byte_progress("verifying", _payload_size(bundle)) as advance:
        result = verify_bundle(bundle, policy, progress=advance)
    if output == "json":
        click.echo(json.dumps(result.receipt(), indent=2))
        return
    click.echo(f"OK: {bundle.name} is appliance {result.manifest.version}, {len(result.manifest.members)} members.")
    for signer in result.signers:
        click.echo(f"  signed by {signer.user_id} ({signer.fingerprint})")
    click.echo(f"  expires {result.manifest.expires_at:%Y-%m-%d}; manifest sha256 {result.manifest_sha256}")
    if result.downgrade:
        auth = result.downgrade.authorization
        click.echo(f"  downgrade {auth.from_version} -> {auth.to_version} authorized: {auth.reason}")
    if result.rotation:
        click.echo("  carries new release keys signed by the current ones; installers pin them after installing")
    for override in result.overrides:
        console.print(f"[yellow]warning:[/] {override}")


def _payload_size(bundle: Path) -> int:
    try:
        return bundle.stat().st_size
    except OSError:
        return 0


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return str(size)


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--keyring", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Verify with these keys first (without it, signers are shown unverified).")
@click.option("--threshold", default=1, show_default=True, type=click.IntRange(1, 16))
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
def inspect(bundle: Path, keyring: Path | None, threshold: int, output: str) -> None:
    """Show BUNDLE's version, signers, expiry, sizes by role and SBOM counts."""
    report = inspect_bundle(bundle, _policy(keyring, threshold, None, None) if keyring else None)
    if output == "json":
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    manifest = report.manifest
    click.echo(f"{manifest.product} {manifest.version}  ({bundle.name})")
    click.echo(f"  created     {manifest.created_at:%Y-%m-%d %H:%M} UTC, expires {manifest.expires_at:%Y-%m-%d}")
    click.echo(f"  upgrades    from {manifest.min_upgrade_from} or later")
    if report.verified:
        for signer in report.verified.signers:
            click.echo(f"  signed by   {signer.user_id} ({signer.fingerprint}), verified")
    else:
        console.print(f"  [yellow]signatures  {report.signature_count} present, NOT verified (pass --keyring)[/]")
    click.echo(f"  size        {_human(manifest.total_size)} in {len(manifest.members)} members")
    for role, size in manifest.size_by_role().items():
        click.echo(f"    {role:<10} {_human(size):>10}")
    plural = {"binary": "binaries"}
    click.echo("  SBOM        " + ", ".join(f"{n} {k if n == 1 else plural.get(k, k + 's')}"
                                            for k, n in report.sbom_counts().items()))


@cli.command()
@click.argument("old", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("new", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--keyring", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Verify both bundles first.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True)
def diff(old: Path, new: Path, keyring: Path | None, output: str) -> None:
    """List packages, wheels, providers and images added, removed or changed from OLD to NEW."""
    policy = _policy(keyring, 1, None, None) if keyring else None
    before, after = inspect_bundle(old, policy), inspect_bundle(new, policy)
    changes = diff_bundles(before, after)
    if output == "json":
        click.echo(json.dumps([{"kind": c.kind, "name": c.name, "old": c.old, "new": c.new, "change": c.what}
                               for c in changes], indent=2))
        return
    click.echo(f"{before.manifest.version} -> {after.manifest.version}: {len(changes)} change(s)")
    for change in changes:
        versions = change.new if change.what == "added" else change.old if change.what == "removed" \
            else f"{change.old} -> {change.new}"
        click.echo(f"  {change.what:<8} {change.kind:<9} {change.name}  {versions}")


@cli.group()
def image() -> None:
    """Build the workspace images a bundle carries."""


@image.command("build")
@click.option("--output", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder for the OCI image layout (new, empty, or a layout an earlier build wrote).")
@click.option("--tag", default=DEFAULT_TAG, show_default=True, help="The layout's reference name for the image.")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=Path(".cache/bundle"),
              show_default=True,
              help="Where downloaded .debs are kept for the next build, and the rootfs while building.")
def image_build(output: Path, tag: str, cache_dir: Path) -> None:
    """Build the default workspace image (Debian 12, user 'dev' with passwordless sudo) as an OCI layout.

    Needs root and debootstrap; the Debian mirror is the one this machine's apt sources use. The
    same packages give the same digest: mtimes are SOURCE_DATE_EPOCH, or the newest package's date.
    """
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as progress:
        progress.add_task("debootstrap and layer (a minute or two)", total=None)
        built = build_base_image(output, cache_dir, tag=tag)
    click.echo(f"Built {output} ({tag}, user {USER}): manifest {built.manifest.digest}")
    click.echo(f"Inspect: skopeo inspect oci:{output}:{tag}")


@cli.group()
def keys() -> None:
    """Make and export release signing keys."""


@keys.command("generate")
@click.option("--name", required=True, help="Who the key belongs to, e.g. 'Appliance Release 2026'.")
@click.option("--email", required=True)
@click.option("--gnupghome", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="A dedicated GPG home for the new key.")
@click.option("--expire", default="2y", show_default=True)
@click.option("--export-public", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the public key here: binary for a .gpg name (what gpgv reads), else armored.")
def keys_generate(name: str, email: str, gnupghome: Path, expire: str, export_public: Path | None) -> None:
    """Generate an ed25519 signing key WITHOUT a passphrase: for tests and trial builds only.

    A real release key is made on an offline machine, protected by a passphrase (ideally on a
    smartcard), and only its public part leaves that machine; see bundles/README.md.
    """
    fingerprint = generate_key(gnupghome, name, email, expire)
    click.echo(fingerprint)
    if export_public:
        export_public.write_bytes(export_public_key(gnupghome, fingerprint, armor=export_public.suffix != ".gpg"))
        console.print(f"Public key written to {export_public}")


@keys.command("export")
@click.argument("fingerprint")
@click.option("--gnupghome", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="Binary for a .gpg name (what gpgv reads on a fresh host), else ASCII-armored.")
def keys_export(fingerprint: str, gnupghome: Path | None, output: Path) -> None:
    """Write the public key FINGERPRINT, for the keyring installers trust."""
    output.write_bytes(export_public_key(gnupghome, fingerprint, armor=output.suffix != ".gpg"))
    click.echo(f"Wrote {output}.")


@cli.command("authorize-downgrade")
@click.option("--from", "from_version", required=True, help="The version installed now.")
@click.option("--to", "to_version", required=True, help="The older version to go back to.")
@click.option("--reason", required=True, help="Why; recorded on the host with the downgrade.")
@click.option("--valid-for", default=7, show_default=True, type=click.IntRange(1, 90), help="Days until it expires.")
@_signing_options
@click.option("--output", "-o", type=click.Path(path_type=Path, dir_okay=False), required=True)
def authorize_downgrade(from_version: str, to_version: str, reason: str, valid_for: int, keys: tuple[str, ...],
                        gnupghome: Path | None, output: Path) -> None:
    """Sign permission to install version TO over FROM (installers refuse older bundles without one)."""
    if output.exists():
        raise BundleError(f"{output} already exists.", "Choose a new --output, or add a signature to it with "
                          "'appliance-bundle countersign-downgrade'.")
    auth = authorize(from_version, to_version, reason, valid_for=timedelta(days=valid_for))
    count = write_signed(output, auth.document(), keys, gnupghome, _passphrase())
    click.echo(f"Wrote {output}: downgrade {from_version} -> {to_version}, {count} signature(s), "
               f"expires {auth.expires_at:%Y-%m-%d %H:%M} UTC.")
    click.echo(f"On the host: appliance-installer install BUNDLE --downgrade-authorization {output}")


@cli.command("countersign-downgrade")
@click.argument("authorization", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_signing_options
def countersign_downgrade(authorization: Path, keys: tuple[str, ...], gnupghome: Path | None) -> None:
    """Add signatures to AUTHORIZATION (for a threshold of several key holders)."""
    count = write_signed(authorization, read_document(authorization), keys, gnupghome, _passphrase())
    click.echo(f"Signed {authorization}; it now carries {count} signature(s).")


@cli.command("rotate-keys")
@click.argument("new_keyring", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_signing_options
def rotate_keys(new_keyring: Path, keys: tuple[str, ...], gnupghome: Path | None) -> None:
    """Sign NEW_KEYRING (the next trusted release keys) into NEW_KEYRING.sig, keeping signatures already there.

    Installers accept the rotation only when the keys they trust now (meeting their threshold) and
    the new keys themselves have signed; then `build --rotate-keyring NEW_KEYRING` carries it.
    """
    count = sign_keyring(new_keyring, keys, gnupghome, _passphrase())
    click.echo(f"Signed {new_keyring}; {signatures_path(new_keyring).name} now carries {count} signature(s).")
    click.echo(f"Next: appliance-bundle build --rotate-keyring {new_keyring} ...")
