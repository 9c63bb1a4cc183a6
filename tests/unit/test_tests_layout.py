"""tests/unit and tests/integration mirror the source tree, so a module's tests are where its path says."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Tests of the repository as a whole (its import contracts, its Vagrantfile, this layout) sit at the top.
REPO_WIDE = {"test_import_contracts.py", "test_vagrantfile.py", "test_tests_layout.py", "test_security_findings.py"}


@pytest.mark.parametrize("kind", ["unit", "integration"])
def test_every_test_module_sits_under_the_package_it_tests(kind: str) -> None:
    root = REPO / "tests" / kind
    misplaced = []
    for test in sorted(root.rglob("test_*.py")):
        where = test.parent.relative_to(root)
        if where == Path() and test.name in REPO_WIDE:
            continue
        if where == Path() or not (REPO / where / "__init__.py").is_file():
            misplaced.append(str(test.relative_to(REPO)))
    assert not misplaced, (f"these tests are not under a folder named after a source package: {misplaced}; "
                           f"move each to tests/{kind}/<package path>/")
