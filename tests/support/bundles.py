"""Small real bundles for tests: a stage of tiny artifacts, real GPG keys made at test time."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance import __version__ as appliance_version
from bundles.build.assemble import assemble
from bundles.build.sbom import write_sbom
from bundles.rotation import sign_keyring, signatures_path, stage_rotation
from bundles.signatures import export_public_key, generate_key, sign_manifest
from bundles.tarball import read_head, replace_signatures

CREATED = datetime(2026, 6, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ReleaseKey:
    home: Path
    fingerprint: str

    @property
    def public(self) -> bytes:
        return export_public_key(self.home, self.fingerprint)


def make_key(root: Path, name: str) -> ReleaseKey:
    home = root / f"gnupg-{name}"
    return ReleaseKey(home, generate_key(home, f"Release {name}", f"{name}@example.org"))


def make_expired_key(root: Path, name: str, *, made: datetime, lifetime_days: int) -> ReleaseKey:
    """A key made at `made` (gpg's faked clock) that expired `lifetime_days` later, before today."""
    home = root / f"gnupg-{name}"
    home.mkdir(parents=True, mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--faked-system-time", f"{int(made.timestamp())}!",
                    "--passphrase", "", "--quick-gen-key", f"Release {name} <{name}@example.org>", "ed25519", "sign",
                    f"{lifetime_days}d"], check=True, capture_output=True)
    listed = subprocess.run(["gpg", "--homedir", str(home), "--with-colons", "--list-keys"], check=True,
                            capture_output=True, text=True).stdout
    return ReleaseKey(home, next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:")))


def sign_at(data: bytes, key: ReleaseKey, when: datetime) -> bytes:
    """A detached armored signature made as if the clock said `when` (while a now-expired key was valid)."""
    return subprocess.run(["gpg", "--homedir", str(key.home), "--batch", "--faked-system-time",
                           f"{int(when.timestamp())}!", "--local-user", key.fingerprint, "--armor", "--detach-sign",
                           "--output", "-"], input=data, check=True, capture_output=True).stdout


def add_rotation(stage: Path, new_keyring: bytes, *signers: ReleaseKey) -> Path:
    """Put a key rotation into the stage the way the release tooling does: rotate-keys, then build --rotate-keyring."""
    source = stage.parent / "next-release-keys.pgp"
    source.write_bytes(new_keyring)
    signatures_path(source).unlink(missing_ok=True)
    for key in signers:
        sign_keyring(source, (key.fingerprint,), key.home, None)
    stage_rotation(stage, source)
    return source


def tiny_deb(folder: Path, package: str, version: str) -> Path:
    """A real (empty) Debian package, so dpkg-deb and the SBOM can read it."""
    root = folder / f".build-{package}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        f"Description: test package {package}\n")
    out = folder / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(root), str(out)], check=True,
                   capture_output=True, env={"SOURCE_DATE_EPOCH": "1780000000", "PATH": "/usr/bin:/bin"})
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return out


def make_stage(folder: Path, *, deb_version: str = "1.0-1", wheel_version: str = "2.0.0",
               appliance_version: str = appliance_version) -> Path:
    """A stage with one member of every role, each small; its appliance wheel has the package's version."""
    stage = folder / "stage"
    for sub in ("installer", "wheels", "debs", "terraform", "agent", "playbooks/roles/base", "docs", "images/base",
                "providers/registry.terraform.io/hashicorp/random"):
        (stage / sub).mkdir(parents=True, exist_ok=True)
    installer = stage / "installer" / "appliance-installer"
    installer.write_bytes(b"#!/bin/sh\necho installer\n" + bytes(range(256)) * 40)
    installer.chmod(0o755)
    terraform = stage / "terraform" / "terraform"
    terraform.write_bytes(b"\x7fELF fake terraform" * 100)
    terraform.chmod(0o755)
    agent = stage / "agent" / "appliance-agent-linux-amd64"
    agent.write_bytes(b"\x7fELF fake agent" * 100)
    agent.chmod(0o755)
    (stage / "wheels" / f"flask-{wheel_version}-py3-none-any.whl").write_bytes(b"PK wheel " * 500)
    (stage / "wheels" / f"appliance-{appliance_version}-py3-none-any.whl").write_bytes(b"PK appliance " * 500)
    tiny_deb(stage / "debs", "nginx", deb_version)
    (stage / "debs" / "Packages").write_text("Package: nginx\n")
    (stage / "playbooks" / "site.yml").write_text("- hosts: localhost\n")
    (stage / "playbooks" / "roles" / "base" / "main.yml").write_text("---\n")
    (stage / "docs" / "README.md").write_text("# Appliance\n")
    (stage / "images" / "base" / "index.json").write_text('{"schemaVersion": 2}\n')
    (stage / "providers/registry.terraform.io/hashicorp/random/terraform-provider-random_3.6.0_linux_amd64.zip"
     ).write_bytes(b"PK provider " * 300)
    write_sbom(stage, product="appliance", version="1.2.0", created=CREATED, tool_version="test")
    return stage


def build_bundle(stage: Path, out_dir: Path, *, version: str = "1.2.0", min_upgrade_from: str = "1.0.0",
                 created: datetime = CREATED, expires_after: timedelta = timedelta(days=365)) -> Path:
    return assemble(stage, out_dir, version=version, created=created, expires_after=expires_after,
                    min_upgrade_from=min_upgrade_from, build_info={"commit": "test"})


def sign_bundle(bundle: Path, *keys: ReleaseKey) -> None:
    manifest, existing, _ = read_head(bundle)
    blocks = [existing] if existing else []
    blocks += [sign_manifest(manifest, key.fingerprint, key.home) for key in keys]
    replace_signatures(bundle, b"".join(blocks))


def staged_source(repo: Path, out: Path, version: str) -> Path:
    """A copy of the checkout's files (tracked and new, as they are now) whose pyproject.toml says `version`.

    What a release engineer has after bumping the version: building from it releases `version`,
    which the checkout itself does not carry.
    """
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = repo / name
        if source.is_symlink() or not source.is_file():
            continue  # the .venv link, and files deleted in the working tree
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, out / name)
    pyproject = out / "pyproject.toml"
    text, count = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text(), count=1)
    assert count == 1, "pyproject.toml has no [project] version line to bump"
    pyproject.write_text(text)
    return out
