"""The layout DESIGN.md promises: one job per module, and no module that grows past it."""

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_crl"
# The loss's numerics are one job: its classes, functions and checks.
LONG_ALLOWED = {"losses.py"}


@pytest.mark.once_per_suite
def test_no_module_over_500_lines_but_the_losses():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500 and path.name not in LONG_ALLOWED
    }
    assert not long, f"split these modules by job (DESIGN.md): {long}"


@pytest.mark.once_per_suite
def test_design_names_every_module():
    design = (PACKAGE.parent / "DESIGN.md").read_text()
    missing = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and path.stem not in design
    ]
    assert not missing, f"DESIGN.md does not mention: {missing}"
