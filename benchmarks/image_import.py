"""`appliance images import` throughput as a ratio to a bare `skopeo copy` of the same layout, same run.

Run as root from the repository root (needs docker-registry and skopeo):

    PYTHONPATH=. .venv/bin/python benchmarks/image_import.py [--rounds 3] [--layout DIR]

Each copy goes to a registry with empty storage (a registry skips blobs it already has), started
before the clock runs. Both copies use the same TLS registry, CA and kind of token; what the ratio
shows is what the appliance adds: Python start-up, the layout checks, signing the token.
The layout defaults to .cache/base-image (what the tests build), built now if missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.config import load_server_config
from appliance.pki.ca import CertificateAuthority
from appliance.registry import site
from appliance.registry.config import write_registry_config
from appliance.registry.images import cert_dir
from appliance.registry.layouts import image_source
from appliance.registry.scopes import REPOSITORY, Access
from appliance.registry.tokens import ensure_signing_certificate, load_signer, sign_token

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LAYOUT = REPO / ".cache" / "base-image"


def _layout(path: Path) -> Path:
    if not (path / "index.json").is_file():
        print(f"building the base image into {path} (a minute or two) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "bundles", "image", "build", "--output", str(path),
                        "--cache-dir", str(REPO / ".cache" / "bundle")], check=True)
    return path


def _free_port() -> int:
    import socket  # local: only the port choice needs it

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed_copy(env: dict[str, str], storage: Path, argv: list[str]) -> float:
    config = load_server_config({"data_dir": env["APPLIANCE_DATA_DIR"]})
    write_registry_config(replace(site.settings(config), storage_dir=storage), site.config_file(config))
    registry = site.embedded_process(config)
    registry.start()
    try:
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        return time.perf_counter() - started
    finally:
        registry.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layout", type=Path, default=DEFAULT_LAYOUT)
    args = parser.parse_args()
    layout = _layout(args.layout)
    source = image_source(layout)
    work = Path(tempfile.mkdtemp(prefix="image-import-bench-"))
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(work / "data"),
           "APPLIANCE_REGISTRY_ADDRESS": f"127.0.0.1:{_free_port()}"}
    os.environ.update(env)
    try:
        config = load_server_config({})
        ca = CertificateAuthority(config.pki_dir)
        ca.init(b"benchmark-passphrase")
        ensure_signing_certificate(ca)
        site.ensure_certificate(ca, config)
        host = site.advertised_host(config)
        bare_s, appliance_s = [], []
        with cert_dir(ca.layout.root_cert) as certs:
            for round_ in range(args.rounds):
                token = sign_token(load_signer(ca), "bench", [Access(REPOSITORY, "bench/bare", ("pull", "push"))],
                                   datetime.now(UTC), timedelta(hours=1)).token
                bare_s.append(_timed_copy(env, work / f"bare-{round_}", [
                    "skopeo", "copy", "--quiet", "--dest-cert-dir", str(certs), "--dest-registry-token", token,
                    source.transport, f"docker://{host}/bench/bare:1"]))
                appliance_s.append(_timed_copy(env, work / f"appliance-{round_}", [
                    sys.executable, "-m", "appliance", "images", "import", str(layout), "--name", "bench/app:1"]))
        megabytes = source.total_bytes / 1e6
        bare, appliance = min(bare_s), min(appliance_s)
        print(f"image import of {megabytes:.1f} MB, best of {args.rounds}: skopeo copy {bare:.2f} s "
              f"({megabytes / bare:.0f} MB/s), appliance images import {appliance:.2f} s "
              f"({megabytes / appliance:.0f} MB/s); import / skopeo = {appliance / bare:.2f}x time, "
              f"throughput ratio {bare / appliance:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
