"""Install settings and parsing Ansible's output."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer.ansible_runner import _FATAL, _RECAP, _TASK, _failure_text
from installer.config import load_install_config
from installer.errors import InstallError


def test_settings_have_sane_defaults(tmp_path: Path) -> None:
    path = tmp_path / "install.toml"
    path.write_text('hostname = "Appliance.Example.org"\nhttps_port = 8443\n')
    config = load_install_config(path)
    assert config.hostname == "appliance.example.org"
    assert config.access_url == "https://appliance.example.org:8443"
    assert config.http_port == 80 and config.signature_threshold == 1
    assert load_install_config(None).hostname  # the host's own FQDN


@pytest.mark.parametrize(("text", "problem"), [
    ('hostname = "bad_name!"', "is not a host name"),
    ("https_port = 70000", "expected a port"),
    ('extra_ips = ["10.0.0.300"]', "is not an IP address"),
    ("signature_threshold = 0", "signatures cannot be turned off"),
    ('hostnme = "typo"', "Unknown key(s) hostnme"),
    ("hostname = [", "not valid TOML"),
], ids=["bad hostname", "port out of range", "bad ip", "zero threshold", "typo in a key", "broken toml"])
def test_bad_settings_name_the_key(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "install.toml"
    path.write_text(text)
    with pytest.raises(InstallError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        load_install_config(path)


def test_ansible_output_is_parsed_for_tasks_failures_and_the_recap() -> None:
    task = _TASK.match("TASK [postgres : Ensure PostgreSQL is installed from the bundle] ******")
    assert task and task["name"] == "postgres : Ensure PostgreSQL is installed from the bundle"
    fatal = _FATAL.match('fatal: [localhost]: FAILED! => {"changed": false, "msg": "No package matching \'x\'", '
                         '"stderr": "E: Unable to locate package x\\n"}')
    assert fatal and _failure_text(fatal["body"]) == "No package matching 'x' | E: Unable to locate package x"
    recap = _RECAP.match("localhost                  : ok=41   changed=0    unreachable=0    failed=0    skipped=3"
                         "    rescued=0    ignored=0   ")
    assert recap and "changed=0" in recap["counts"]
