"""The registry's config: token auth pointed at the control plane, trusting the given CA bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import OperatorError
from appliance.registry.config import RegistrySettings, is_read_only, set_read_only, write_registry_config


def test_the_config_sends_clients_to_the_token_url_and_trusts_the_ca(tmp_path: Path) -> None:
    settings = RegistrySettings(tmp_path / "storage", "127.0.0.1:5001", "https://appliance.test",
                                tmp_path / "pki" / "root" / "ca.crt.pem")
    written = write_registry_config(settings, tmp_path / "registry" / "config.yml")
    config = json.loads(written.read_text())
    assert config["auth"] == {"token": {"realm": "https://appliance.test/api/v2/registry/token",
                                        "service": "appliance-registry", "issuer": "appliance",
                                        "rootcertbundle": str(settings.root_certificates)}}
    assert config["storage"]["filesystem"]["rootdirectory"] == str(tmp_path / "storage")
    assert config["http"]["addr"] == "127.0.0.1:5001"
    assert written.stat().st_mode & 0o077 == 0  # the upload-state secret is the server's alone


def test_tls_paths_are_written_and_a_rewrite_keeps_the_upload_secret(tmp_path: Path) -> None:
    settings = RegistrySettings(tmp_path / "storage", "127.0.0.1:3002", "https://appliance.test",
                                tmp_path / "ca.pem", tmp_path / "fullchain.pem", tmp_path / "key.pem")
    path = write_registry_config(settings, tmp_path / "config.yml")
    first = json.loads(path.read_text())
    assert first["http"]["tls"] == {"certificate": str(tmp_path / "fullchain.pem"), "key": str(tmp_path / "key.pem")}
    write_registry_config(settings, path)
    assert json.loads(path.read_text())["http"]["secret"] == first["http"]["secret"]


def test_read_only_flips_in_place_and_keeps_everything_else(tmp_path: Path) -> None:
    settings = RegistrySettings(tmp_path / "storage", "127.0.0.1:3002", "https://appliance.test", tmp_path / "ca.pem")
    path = write_registry_config(settings, tmp_path / "config.yml")
    before = json.loads(path.read_text())
    set_read_only(path, True)
    assert is_read_only(path)
    set_read_only(path, False)
    assert not is_read_only(path)
    assert json.loads(path.read_text()) == before
    assert path.stat().st_mode & 0o077 == 0


def test_a_config_that_is_not_the_appliances_json_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text("version: 0.1\nstorage: {}\n")
    with pytest.raises(OperatorError) as caught:
        set_read_only(path, True)
    assert str(path) in caught.value.message and "write-config" in caught.value.hint
