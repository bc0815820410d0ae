"""pytest plugin for tests/mutants.py: stop a guard at its first failure.

A mutant is caught when each of its guards has a failing test, so once a
guard has failed, its remaining tests cannot change the verdict: they are
skipped. A test is skipped only when every guard it belongs to has failed;
a mutant that survives still runs every test of its guards.

    MUTANT_GUARDS='["tests/a.py", "tests/b.py::test_c"]' \
        pytest -p tests.guard_plugin tests/a.py tests/b.py::test_c
"""

import json
import os

import pytest

GUARDS = tuple(json.loads(os.environ.get("MUTANT_GUARDS", "[]")))
_failed = set()


def guards_of(nodeid):
    """The guards (a file, a test, or a test with its parameter) holding a test."""
    return {g for g in GUARDS if nodeid == g or nodeid.startswith((f"{g}::", f"{g}["))}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    guards = guards_of(item.nodeid)
    # Before any fixture is set up, so a skipped test costs nothing.
    if guards and guards <= _failed:
        pytest.skip("each of its guards has already failed")


def pytest_runtest_logreport(report):
    if report.failed:
        _failed.update(guards_of(report.nodeid))
