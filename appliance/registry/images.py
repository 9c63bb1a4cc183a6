"""Images in the internal registry: import from disk with skopeo, and list what is stored.

Both run on the appliance host and sign their own short token with the CA's registry-token key
(reading that key is the credential), so they work before any user exists. TLS trusts the CA root
given through a cert dir, as skopeo and podman take it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.errors import OperatorError
from appliance.pki.ca import CertificateAuthority
from appliance.registry.layouts import LAYOUT_HINT, image_source
from appliance.registry.scopes import PULL, PUSH, REPOSITORY, REPOSITORY_NAME, Access
from appliance.registry.tokens import load_signer, sign_token

SKOPEO = "skopeo"
SKOPEO_HINT = "Install it as root: apt-get install skopeo."
TOOL_SUBJECT = "appliance-images"  # the `sub` of tokens the host's own tools sign
COPY_TOKEN_LIFETIME = timedelta(hours=2)  # skopeo holds one token for the whole copy
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
NAME_HINT = "Name it REPO:TAG, e.g. --name base/debian:12 (lower-case repository, '/' between parts)."


@dataclass(frozen=True)
class ImageName:
    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Imported:
    reference: str  # host:port/repo:tag
    digest: str
    bytes: int


def parse_name(text: str) -> ImageName:
    repository, sep, tag = text.rpartition(":")
    if not sep or "/" in tag:
        repository, tag = text, "latest"
    if not REPOSITORY_NAME.fullmatch(repository) or len(repository) > 255:
        raise OperatorError(f"Invalid repository name {repository!r} in {text!r}.", NAME_HINT)
    if not _TAG.fullmatch(tag):
        raise OperatorError(f"Invalid tag {tag!r} in {text!r}.", NAME_HINT)
    return ImageName(repository, tag)


@contextmanager
def cert_dir(root_certificate: Path) -> Iterator[Path]:
    """A directory holding only the CA root as ca.crt: what skopeo's and podman's --cert-dir read."""
    with tempfile.TemporaryDirectory(prefix="appliance-registry-ca-") as tmp:
        shutil.copyfile(root_certificate, Path(tmp) / "ca.crt")
        yield Path(tmp)


def _skopeo() -> str:
    found = shutil.which(SKOPEO)
    if found is None:
        raise OperatorError("skopeo is not installed; the appliance copies images with it.", SKOPEO_HINT)
    return found


def _copy_failed(path: Path, transport: str, output: str) -> OperatorError:
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    bad = _DIGEST.search(last)
    where = f" (blob {path / 'blobs' / 'sha256' / bad.group(1)})" if bad and transport.startswith("oci:") else ""
    return OperatorError(f"Could not copy the image at {path}{where}: {last}", LAYOUT_HINT)


def import_image(ca: CertificateAuthority, registry_host: str, path: Path, name: str | None, ref: str | None = None,
                 progress: Callable[[str], None] = lambda _: None) -> Imported:
    """Copy the OCI layout or docker-archive at `path` into the registry as `name` (or the source's own)."""
    source = image_source(path, ref)
    if name is None and source.default_name is None:
        raise OperatorError(f"{path} names no image; say what to call it with --name.", NAME_HINT)
    image = parse_name(name or source.default_name or "")
    executable = _skopeo()
    token = sign_token(load_signer(ca), TOOL_SUBJECT, [Access(REPOSITORY, image.repository, (PULL, PUSH))],
                       datetime.now(UTC), COPY_TOKEN_LIFETIME).token
    reference = f"{registry_host}/{image}"
    with cert_dir(ca.layout.root_cert) as certs:
        digest_file = certs / "digest"
        argv = [executable, "copy", "--dest-cert-dir", str(certs), "--dest-registry-token", token,
                "--digestfile", str(digest_file), source.transport, f"docker://{reference}"]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as copy:
            assert copy.stdout is not None
            output = []
            for line in copy.stdout:
                output.append(line)
                progress(line.strip())
        if copy.returncode != 0:
            raise _copy_failed(path, source.transport, "".join(output))
        digest = digest_file.read_text().strip()
    return Imported(reference, digest, source.total_bytes)
