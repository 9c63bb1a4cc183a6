"""`appliance pki` as an operator runs it: concurrency, exit codes, and errors that name the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PASSPHRASE = "correct horse battery staple"


class Pki:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}

    def __call__(self, *args: str, passphrase: str | None = PASSPHRASE,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **({"APPLIANCE_PKI_PASSPHRASE": passphrase} if passphrase else {})}
        return subprocess.run([sys.executable, "-m", "appliance", "pki", "--data-dir", str(self.data_dir), *args],
                              capture_output=True, text=True, timeout=120, env=env, input=input, check=False)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    tool = Pki(tmp_path / "data")
    result = tool("init")
    assert result.returncode == 0, result.stderr
    assert "Root fingerprint (SHA-256):" in result.stdout
    return tool


def _index(pki: Pki) -> list[dict[str, object]]:
    records: list[dict[str, object]] = json.loads((pki.data_dir / "pki" / "index.json").read_text())["certificates"]
    return records


def test_concurrent_issues_get_distinct_serials_and_all_are_recorded(pki: Pki) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda n: pki("issue", f"svc{n}", "--dns", f"svc{n}.test"), range(6)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    serials = [r["serial"] for r in _index(pki)]
    assert len(serials) == len(set(serials)) == 6


def test_two_concurrent_issues_of_one_name_give_one_certificate_and_one_clear_refusal(pki: Pki) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: pki("issue", "web", "--dns", "web.test"), range(2)))
    assert sorted(r.returncode for r in results) == [0, 1]
    refused = next(r for r in results if r.returncode == 1)
    assert "Certificate 'web' already exists" in refused.stderr
    assert len(_index(pki)) == 1


@pytest.mark.parametrize(("args", "message"), [
    (("issue", "a/b", "--dns", "x.test"), "Invalid certificate name 'a/b'"),
    (("issue", "web", "--ip", "300.1.1.1"), "Invalid IP address '300.1.1.1'"),
    (("issue", "web"), "at least one --dns name or --ip"),
    (("renew", "nothing"), "No certificate named 'nothing'"),
    (("revoke", "abc123", "--reason", "superseded", "--yes"), "No certificate with serial 'abc123'"),
], ids=["name with a path separator", "ip that does not parse", "no names", "renew unknown", "revoke unknown"])
def test_bad_input_exits_1_with_a_message_and_writes_nothing(pki: Pki, args: tuple[str, ...], message: str) -> None:
    before = sorted(p.relative_to(pki.data_dir) for p in pki.data_dir.rglob("*"))
    result = pki(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.relative_to(pki.data_dir) for p in pki.data_dir.rglob("*")) == before


def test_renewing_a_revoked_certificate_is_refused(pki: Pki) -> None:
    pki("issue", "web", "--dns", "web.test")
    serial = str(_index(pki)[0]["serial"])
    assert pki("revoke", serial, "--reason", "key-compromise", "--yes").returncode == 0
    result = pki("renew", "web")
    assert result.returncode == 1
    assert "was revoked on" in result.stderr and "pki issue web" in result.stderr


def test_a_wrong_passphrase_is_refused_and_the_root_key_stays(pki: Pki, tmp_path: Path) -> None:
    result = pki("export-root", str(tmp_path / "usb.pem"), "--remove", passphrase="not the right passphrase")
    assert result.returncode == 1
    assert "Wrong passphrase" in result.stderr
    assert (pki.data_dir / "pki" / "root" / "ca.key.pem").exists()
    assert not (tmp_path / "usb.pem").exists()


def test_a_corrupt_key_file_is_named(pki: Pki) -> None:
    (pki.data_dir / "pki" / "intermediate" / "ca.key.pem").write_text("garbage\n")
    result = pki("issue", "web", "--dns", "web.test")
    assert result.returncode == 1
    assert "intermediate/ca.key.pem is corrupt or not a PEM private key" in result.stderr


def test_export_root_remove_then_issuing_still_works(pki: Pki, tmp_path: Path) -> None:
    assert pki("export-root", str(tmp_path / "usb.pem"), "--remove").returncode == 0
    assert not (pki.data_dir / "pki" / "root" / "ca.key.pem").exists()
    assert pki("issue", "web", "--dns", "web.test", passphrase=None).returncode == 0
    status = json.loads(pki("status", "--output", "json").stdout)
    assert status["root"]["key_on_host"] is False


def test_status_exits_1_when_a_certificate_expires_within_the_window(pki: Pki) -> None:
    pki("issue", "web", "--dns", "web.test", "--days", "90")
    assert pki("status").returncode == 0
    pki("issue", "soon", "--dns", "soon.test", "--days", "5")
    result = pki("status", "--warn-within", "30d")
    assert result.returncode == 1
    assert "Certificate soon" in result.stderr and "expiring" in result.stderr
    renewed = pki("renew", "--due", "30d")
    assert "Renewed soon" in renewed.stdout
    pki("issue", "later", "--dns", "later.test", "--days", "5")
    # Under its timer on an installed host (log_format json): one JSON event per certificate, on stderr.
    pki.env["APPLIANCE_LOG_FORMAT"] = "json"
    events = [json.loads(line) for line in pki("renew", "--due", "30d").stderr.splitlines()]
    # A renewal keeps the validity (5 days), so soon is due again.
    assert sorted((e["event"], e["certificate"], e["logger"]) for e in events) == [
        ("certificate_renewed", "later", "appliance.pki"), ("certificate_renewed", "soon", "appliance.pki")]
    del pki.env["APPLIANCE_LOG_FORMAT"]
    assert pki("status", "--warn-within", "4d").returncode == 0


def test_init_reads_the_passphrase_from_a_file_and_refuses_a_second_init(tmp_path: Path) -> None:
    tool = Pki(tmp_path / "data")
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    assert tool("init", "--passphrase-file", str(secret), passphrase=None).returncode == 0
    again = tool("init", "--passphrase-file", str(secret), passphrase=None)
    assert again.returncode == 1 and "A CA already exists" in again.stderr
    no_passphrase = Pki(tmp_path / "other")("init", passphrase=None)
    assert no_passphrase.returncode == 1 and "passphrase is needed" in no_passphrase.stderr


def test_trust_bundle_prints_the_pem_and_the_fingerprint(pki: Pki) -> None:
    result = pki("trust-bundle")
    assert result.stdout.count("BEGIN CERTIFICATE") == 2
    assert result.stdout == (pki.data_dir / "pki" / "ca-bundle.pem").read_text()
    assert "Root fingerprint (SHA-256):" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a key to another user needs root")
def test_keys_can_be_owned_by_the_service_user(tmp_path: Path) -> None:
    import pwd

    service = pwd.getpwnam("nobody")
    tool = Pki(tmp_path / "data")
    assert tool("init", "--owner", "nobody").returncode == 0
    assert tool("issue", "web", "--dns", "web.test", "--owner", "nobody").returncode == 0
    for key in (tmp_path / "data" / "pki" / "intermediate" / "ca.key.pem",
                tmp_path / "data" / "pki" / "live" / "web" / "key.pem"):
        info = key.stat()
        assert (info.st_uid, info.st_mode & 0o777) == (service.pw_uid, 0o600)
    unknown = tool("issue", "api", "--dns", "api.test", "--owner", "no-such-user")
    assert unknown.returncode == 1 and "No such user 'no-such-user'" in unknown.stderr
    # The daily renewal runs as root and names no owner: the new key stays the service's.
    assert tool("renew", "web").returncode == 0
    renewed = (tmp_path / "data" / "pki" / "live" / "web" / "key.pem").stat()
    assert (renewed.st_uid, renewed.st_mode & 0o777) == (service.pw_uid, 0o600)


def test_the_ssh_user_ca_is_made_once_private_and_printed_as_its_public_line(tmp_path: Path) -> None:
    tool = Pki(tmp_path / "data")
    lines = [tool("ssh-user-ca") for _ in range(2)]
    assert all(result.returncode == 0 for result in lines), lines[0].stderr
    assert lines[0].stdout == lines[1].stdout and lines[0].stdout.startswith("ssh-ed25519 ")
    key = tool.data_dir / "pki" / "ssh" / "user_ca.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" in key.read_text() and key.read_text() not in lines[0].stdout + lines[0].stderr


def test_an_unreadable_ssh_user_ca_is_named_with_the_fix(tmp_path: Path) -> None:
    tool = Pki(tmp_path / "data")
    assert tool("ssh-user-ca").returncode == 0
    env = {**tool.env, "APPLIANCE_DATA_DIR": str(tool.data_dir)}
    refused = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                              "appliance", "pki", "ssh-user-ca"], capture_output=True, text=True, timeout=120,
                             env=env, check=False, cwd="/")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "user_ca.key" in refused.stderr and "--owner appliance" in refused.stderr
