"""The registry's config: token auth pointed at the control plane, trusting the given CA bundle."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.registry.config import RegistrySettings, write_registry_config


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
