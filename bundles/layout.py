"""The bundle's on-disk format, written down once.

A bundle is one uncompressed tar, `appliance-<version>.bundle`:

    manifest.json         first member: the signed description of everything that follows
    manifest.json.sig     second member: one or more ASCII-armored detached GPG signatures
                          over the exact bytes of manifest.json, concatenated
    <members...>          every other file, in the order the manifest lists them (sorted by path)

Member folders give each file its role:

    installer/            the appliance-installer executable
    wheels/               the appliance wheel and every dependency wheel for the target
    debs/                 Debian packages plus a flat repository index (Packages, Release)
    terraform/            the terraform binary
    providers/            the Terraform provider mirror tree
    images/               OCI image layouts
    agent/                the workspace agent executable, served at /bin/appliance-agent-linux-amd64
    playbooks/            the Ansible playbooks
    docs/                 documentation
    keys/                 optional release-key rotation: release-keyring.pgp (the new trusted keyring)
                          and release-keyring.pgp.sig (detached signatures over it by the current
                          keys, meeting the threshold, and by the new keys)
    sbom.cdx.json         the CycloneDX SBOM

Every tar header is normalised (mtime from SOURCE_DATE_EPOCH, uid/gid 0, no user or group
names), so the same inputs give the same bytes.
"""

from __future__ import annotations

FORMAT_VERSION = 1
PRODUCT = "appliance"
MANIFEST = "manifest.json"
SIGNATURES = "manifest.json.sig"
SBOM = "sbom.cdx.json"
BUNDLE_SUFFIX = ".bundle"

# Size limits checked before anything is read into memory.
MAX_MANIFEST_BYTES = 16 << 20
MAX_SIGNATURES_BYTES = 1 << 20
MAX_MEMBERS = 100_000
MAX_PATH_LENGTH = 240

ROLE_BY_FOLDER = {
    "installer": "installer",
    "wheels": "wheel",
    "debs": "deb",
    "terraform": "terraform",
    "providers": "provider",
    "images": "image",
    "agent": "agent",
    "playbooks": "playbooks",
    "docs": "docs",
    "keys": "keys",
}
ROLES = (*ROLE_BY_FOLDER.values(), "sbom")
# SBOM component properties the bundle tools write and read.
SBOM_KIND_PROPERTY = "appliance:kind"      # wheel, deb, binary, provider, image, npm
SBOM_PATH_PROPERTY = "appliance:bundle-path"
# Stage bookkeeping (not in the bundle): the npm packages vendored into the appliance wheel's static files,
# [{"name", "version", "sha256" (of the npm tarball), "tarball"}], for the SBOM.
NPM_PACKAGES = ".npm.json"
# Release-key rotation (docs/adr/0038): the only members keys/ may hold, read into memory while hashed.
ROTATION_KEYRING = "keys/release-keyring.pgp"
ROTATION_SIGNATURES = "keys/release-keyring.pgp.sig"
MAX_KEYRING_BYTES = 1 << 20
EXECUTABLE_MODE = 0o755
FILE_MODE = 0o644
READ_CHUNK = 1 << 20


def bundle_file_name(version: str) -> str:
    return f"{PRODUCT}-{version}{BUNDLE_SUFFIX}"


def sbom_kind(component: dict[str, object]) -> str:
    properties = component.get("properties") or []
    assert isinstance(properties, list)
    return next((str(p["value"]) for p in properties if p.get("name") == SBOM_KIND_PROPERTY), "other")


def role_of(path: str) -> str | None:
    """The role a member path implies, or None when it is outside every known folder."""
    if path == SBOM:
        return "sbom"
    folder, sep, _ = path.partition("/")
    return ROLE_BY_FOLDER.get(folder) if sep else None
