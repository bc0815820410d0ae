"""Every `>>>` example in the keras_crl package runs, and prints what it says.

One case per module, run once per backend (KERAS_BACKEND) like the rest of
the suite, so the examples must be backend-neutral: they print NumPy values
or Python numbers, never a backend's tensor repr. Examples that cannot run
offline are ```python blocks, which doctest does not run.
"""

import doctest
import importlib
import pkgutil

import keras
import numpy as np
import pytest

import keras_crl

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# What the examples may use without importing it, beyond their module's own
# globals.
EXTRA_GLOBS = {"keras": keras, "np": np, "keras_crl": keras_crl}


def package_modules():
    names = [keras_crl.__name__]
    for info in pkgutil.walk_packages(keras_crl.__path__, prefix=keras_crl.__name__ + "."):
        names.append(info.name)
    return sorted(names)


MODULES = package_modules()


def find_examples(name):
    """The module's docstrings that hold `>>>` examples, as doctest tests."""
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(module, name, extraglobs=EXTRA_GLOBS)
    return sorted((t for t in tests if t.examples), key=lambda t: t.name)


def run_examples(tests):
    """Runs doctest tests; returns (failed, attempted, doctest's report)."""
    report = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    for test in tests:
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    return result.failed, result.attempted, "".join(report)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    tests = find_examples(name)
    try:
        failed, attempted, report = run_examples(tests)
    finally:
        keras.backend.clear_session()
    assert failed == 0, f"{failed} of {attempted} examples in {name} failed:\n{report}"


def test_the_examples_are_found():
    # A finder that finds nothing would pass every case above.
    assert "keras_crl.losses" in MODULES and "keras_crl.models.resnet" in MODULES
    assert "keras_crl.data.pipeline" in MODULES and "keras_crl.train" in MODULES
    names = {t.name for t in find_examples("keras_crl.losses")}
    assert {
        "keras_crl.losses.competing_ratio_loss",
        "keras_crl.losses.negative_log_likelihood_ratio_loss",
        "keras_crl.losses.CompetingRatioLoss",
        "keras_crl.losses.NegativeLogLikelihoodRatioLoss",
    } <= names


def test_a_wrong_example_fails():
    # The check has teeth: a docstring whose example prints something else.
    def wrong():
        """
        >>> keras.ops.convert_to_numpy(keras.ops.add(1.0, 1.0)).item()
        3.0
        """

    tests = doctest.DocTestFinder().find(wrong, "wrong", globs=dict(EXTRA_GLOBS))
    failed, attempted, report = run_examples(tests)
    assert (failed, attempted) == (1, 1) and "Expected:\n    3.0" in report
