"""The Debian mirror comes from this machine's apt sources; the recipe is checked key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundles.build.apt_sources import debian_mirror, sources_list
from bundles.errors import BundleError
from bundles.recipe import load_recipe

DEB822 = """Types: deb
URIs: http://mirror.internal/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.internal/debian-security
Suites: bookworm-security
Components: main
"""


def _apt(tmp_path: Path, deb822: str = "", one_line: str = "") -> Path:
    (tmp_path / "sources.list.d").mkdir(parents=True)
    if deb822:
        (tmp_path / "sources.list.d" / "debian.sources").write_text(deb822)
    if one_line:
        (tmp_path / "sources.list").write_text(one_line)
    return tmp_path


def test_the_mirror_is_read_from_deb822_sources(tmp_path: Path) -> None:
    mirror = debian_mirror("bookworm", _apt(tmp_path, DEB822))
    assert (mirror.main, mirror.security) == ("http://mirror.internal/debian", "http://mirror.internal/debian-security")
    assert sources_list(mirror, "bookworm").splitlines() == [
        "deb http://mirror.internal/debian bookworm main",
        "deb http://mirror.internal/debian bookworm-updates main",
        "deb http://mirror.internal/debian-security bookworm-security main"]


def test_the_mirror_is_read_from_one_line_sources(tmp_path: Path) -> None:
    apt = _apt(tmp_path, one_line="# comment\ndeb [arch=amd64] http://other.internal/debian/ bookworm main contrib\n")
    assert debian_mirror("bookworm", apt).main == "http://other.internal/debian"


def test_no_matching_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="No apt source on this machine serves Debian trixie main"):
        debian_mirror("trixie", _apt(tmp_path, DEB822))


def test_the_product_recipe_loads() -> None:
    recipe = load_recipe(Path(__file__).resolve().parents[4] / "bundles" / "appliance.toml")
    assert {"postgresql-15", "nginx", "python3-venv"} <= set(recipe.debs)
    assert recipe.installer_entry.exists()


@pytest.mark.parametrize(("text", "problem"), [
    ("product = 'appliance'", "expires_after is missing"),
    ("product = 'a'\nexpires_after = 'soon'", "must be a number of days"),
    ("product = 'a'\nexpires_after = '30d'\nmin_upgrade_from = '1.0.0'\n[target]\ndistribution = 'bookworm'\n"
     "architecture = 'amd64'\npython = '3.11'\nbaseline_packages = ['Bad Name']", "not a Debian package name"),
    ("product = [", "not valid TOML"),
], ids=["missing key", "bad duration", "bad package name", "broken toml"])
def test_a_bad_recipe_names_the_key(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "bundles").mkdir()
    path = tmp_path / "bundles" / "recipe.toml"
    path.write_text(text)
    with pytest.raises(BundleError, match=problem):
        load_recipe(path)


def test_the_installer_build_cache_key_follows_the_sources(tmp_path: Path) -> None:
    from bundles.build.executable import inputs_digest

    (tmp_path / "installer").mkdir()
    (tmp_path / "tests").mkdir()
    source = tmp_path / "installer" / "cli.py"
    source.write_text("print('v1')\n")
    first = inputs_digest(tmp_path, "appliance-installer", ("ansible",))
    (tmp_path / "tests" / "test_x.py").write_text("assert True\n")
    assert inputs_digest(tmp_path, "appliance-installer", ("ansible",)) == first  # tests are not inputs
    source.write_text("print('v2')\n")
    assert inputs_digest(tmp_path, "appliance-installer", ("ansible",)) != first
    assert inputs_digest(tmp_path, "other-name", ("ansible",)) != inputs_digest(tmp_path, "appliance-installer",
                                                                                 ("ansible",))
