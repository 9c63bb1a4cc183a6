"""Server configuration: defaults < appliance.toml < APPLIANCE_* < flags, and errors that name the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from appliance.config import Address, load_server_config, parse_duration
from appliance.errors import ConfigError


def test_defaults_serve_on_loopback_with_embedded_postgres(tmp_path: Path) -> None:
    config = load_server_config({}, environ={"APPLIANCE_CONFIG": str(_write(tmp_path, ""))})
    assert config.http_address == Address("127.0.0.1", 3000)
    assert config.access_url == "http://127.0.0.1:3000"
    assert config.is_embedded_postgres
    assert config.session_lifetime == timedelta(hours=24)


def test_the_runtime_forwarder_is_on_unless_the_config_turns_it_off(tmp_path: Path) -> None:
    environ = {"APPLIANCE_CONFIG": str(_write(tmp_path, ""))}
    assert load_server_config({}, environ=environ).runtime_forwarder
    environ = {"APPLIANCE_CONFIG": str(_write(tmp_path, "runtime_forwarder = false"))}
    assert not load_server_config({}, environ=environ).runtime_forwarder


def test_environment_overrides_file_and_flag_overrides_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, 'http_address = "127.0.0.1:4000"\nlog_format = "json"\n')
    environ = {"APPLIANCE_CONFIG": str(path), "APPLIANCE_HTTP_ADDRESS": "127.0.0.1:5000"}
    from_env = load_server_config({}, environ=environ)
    assert from_env.http_address.port == 5000
    assert from_env.log_format == "json"  # the file still applies where nothing overrides it
    from_flag = load_server_config({"http_address": "127.0.0.1:6000"}, environ=environ)
    assert from_flag.http_address.port == 6000


def test_access_url_defaults_to_loopback_when_listening_on_all_interfaces(tmp_path: Path) -> None:
    config = load_server_config({"http_address": "0.0.0.0:3000", "config": str(_write(tmp_path, ""))},
                                environ={})
    assert config.access_url == "http://127.0.0.1:3000"


@pytest.mark.parametrize(("source", "expected"), [
    ({"flags": {"http_address": "nonsense"}}, "Invalid http_address from flag --http-address"),
    ({"env": {"APPLIANCE_ACCESS_URL": "ftp://x"}}, "Invalid access_url from environment variable APPLIANCE_ACCESS_URL"),
    ({"file": 'session_lifetime = "forever"'}, "key 'session_lifetime'"),
    ({"file": "proxy_trusted_hops = 9"}, "Invalid proxy_trusted_hops"),
    ({"file": 'htp_address = "x"'}, "Unknown key(s) htp_address"),
    ({"file": "this is = = not toml"}, "is not valid TOML"),
    ({"env": {"APPLIANCE_RUNTIME_MAX_CPUS": "nan"}}, "Invalid runtime_max_cpus"),
    ({"file": "runtime_max_memory_mb = 0"}, "Invalid runtime_max_memory_mb"),
], ids=["bad address flag", "bad url in env", "bad duration in file", "hops out of range",
        "typo in a file key", "broken toml", "runtime CPUs not a number", "runtime memory zero"])
def test_bad_values_fail_naming_the_key_and_where_it_came_from(
        tmp_path: Path, source: dict[str, object], expected: str) -> None:
    path = _write(tmp_path, str(source.get("file", "")))
    environ = {"APPLIANCE_CONFIG": str(path), **source.get("env", {})}  # type: ignore[dict-item]
    with pytest.raises(ConfigError) as caught:
        load_server_config(source.get("flags", {}), environ=environ)  # type: ignore[arg-type]
    assert expected in caught.value.message


def test_postgres_url_value_is_never_echoed_in_errors(tmp_path: Path) -> None:
    environ = {"APPLIANCE_CONFIG": str(_write(tmp_path, "")),
               "APPLIANCE_POSTGRES_URL": "mysql://user:hunter2@db/x"}
    with pytest.raises(ConfigError) as caught:
        load_server_config({}, environ=environ)
    assert "hunter2" not in str(caught.value)


def test_a_named_config_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_server_config({"config": str(tmp_path / "absent.toml")}, environ={})


@pytest.mark.parametrize(("text", "seconds"), [("45s", 45), ("15m", 900), ("24h", 86400),
                                               ("30d", 2592000), ("3600", 3600), (60, 60)])
def test_durations_parse_units(text: str | int, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "0s", "-5m", "1w", "ten days", "1.5h", "999999999999d", 10**20, "\u00b2",
                                  "12\u00b2", "\u0661\u0662d", "30d\nx"])
def test_bad_durations_are_refused(text: str | int) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def _write(folder: Path, text: str) -> Path:
    path = folder / "appliance.toml"
    path.write_text(text)
    return path
