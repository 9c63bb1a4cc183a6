"""lint-imports holds the architecture: an import that points the wrong way fails it, naming the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "bundles", "mirror", "installer", "operator_errors")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(dest: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, so grimp reads the edited files, not the installed ones.
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_contracts_hold_on_this_tree(tmp_path: Path) -> None:
    result = _lint_imports(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "added_import", "contract"), [
    pytest.param("appliance/provisionerd/daemon.py", "import psycopg", "provisionerd and sdk import",
                 id="the external daemon loading the database driver"),
    pytest.param("appliance/sdk/client.py", "from appliance.auth import tokens", "provisionerd and sdk import",
                 id="the sdk reaching into auth"),
    pytest.param("appliance/db/database.py", "from appliance.api import spec", "the control plane's layers",
                 id="the database layer importing the API"),
    pytest.param("appliance/templates/service.py", "from appliance.provisioner import coordinator",
                 "the control plane's layers", id="a domain service importing the job coordinator"),
    pytest.param("appliance/agent/__init__.py", "import flask", "the agent imports only",
                 id="the agent loading Flask"),
    pytest.param("bundles/verify.py", "from appliance.errors import OperatorError", "bundles' format and verifier",
                 id="the bundle verifier importing the control plane"),
    pytest.param("installer/install.py", "import mirror.build", "the installer imports only",
                 id="the installer importing the mirror builder"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path: Path, module: str, added_import: str,
                                                contract: str) -> None:
    tree = _copy_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\n{added_import}  # added by the test\n")
    result = _lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line or contract in line]
    assert any(contract in line for line in broken), result.stdout
    assert module.removesuffix(".py").replace("/", ".").removesuffix(".__init__") in result.stdout
