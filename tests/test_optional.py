"""The core install (keras, numpy, h5py) and the extras' one clear error."""

import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_crl import run_folder
from keras_crl._optional import MissingOptionalDependency
from keras_crl._optional import optional_import
from keras_crl.study import stats
from tests.backend_utils import BACKEND

ROOT = Path(__file__).resolve().parent.parent

# What the extras add to the core install.
OPTIONAL = ("sklearn", "scipy", "PIL", "matplotlib")
# ...less what a backend itself requires: JAX installs and imports scipy.
CORE = tuple(m for m in OPTIONAL if not (BACKEND == "jax" and m == "scipy"))


class Blocker:
    """A `sys.meta_path` finder that makes `names` import as if not installed."""

    def __init__(self, names):
        self.names = set(names)

    def find_spec(self, name, path=None, target=None):
        # A spec that fails to load, not an error here: torch probes for
        # packages with importlib.util.find_spec without importing them.
        if name.partition(".")[0] in self.names:
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked)", name=spec.name)

    def exec_module(self, module):
        pass


@pytest.fixture
def block(monkeypatch):
    """`block(*names)`: until the test ends, importing `names` fails."""

    def block(*names):
        for module in list(sys.modules):
            if module.partition(".")[0] in names:
                monkeypatch.delitem(sys.modules, module)
        monkeypatch.setattr(sys, "meta_path", [Blocker(names), *sys.meta_path])

    return block


# Trains with plain Keras on what a core install has: the optional packages
# blocked before anything imports them (Keras itself only tries them).
CORE_TRAINING = f"""
import importlib.util
import sys

{inspect.getsource(Blocker)}
sys.meta_path.insert(0, Blocker({CORE!r}))

import keras
import numpy as np

import keras_crl
from keras_crl import CompetingRatioLoss

rng = np.random.default_rng(0)
x = rng.normal(size=(32, 6)).astype("float32")
y = rng.integers(0, 3, 32)
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
model.compile(optimizer="sgd", loss=CompetingRatioLoss(from_logits=True))
loss = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history["loss"]
assert np.isfinite(loss).all(), loss
loaded = sorted({{m.partition(".")[0] for m in sys.modules}} & set({CORE!r}))
assert not loaded, loaded
print("trained", keras.backend.backend())
"""


def test_core_install_trains_crl_with_plain_keras():
    env = dict(os.environ, PYTHONPATH=str(ROOT), KERAS_BACKEND=BACKEND)
    result = subprocess.run(
        [sys.executable, "-c", CORE_TRAINING],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained" in result.stdout


@pytest.mark.once_per_suite
def test_a_missing_package_names_itself_and_its_extra(block):
    block("sklearn")
    with pytest.raises(MissingOptionalDependency) as error:
        optional_import("sklearn.datasets", "data", "the digits data set")
    assert str(error.value) == (
        "the digits data set needs scikit-learn: pip install 'keras-crl[data]'"
    )
    assert isinstance(error.value, ImportError)


@pytest.mark.once_per_suite
def test_an_installed_package_that_fails_to_import_raises_its_own_error(
    block, tmp_path, monkeypatch
):
    (tmp_path / "needs_scipy.py").write_text("import scipy\n")
    monkeypatch.syspath_prepend(tmp_path)
    block("scipy")
    with pytest.raises(ModuleNotFoundError) as error:
        optional_import("needs_scipy", "data", "this test")
    assert error.value.name == "scipy"
    assert not isinstance(error.value, MissingOptionalDependency)


@pytest.mark.once_per_suite
def test_the_study_statistics_name_scipy(block):
    block("scipy")
    with pytest.raises(
        MissingOptionalDependency,
        match="^the study's t test needs scipy: pip install 'keras-crl\\[study\\]'$",
    ):
        stats.paired([1.0, 2.0, 3.0])


@pytest.mark.once_per_suite
def test_run_plots_are_skipped_with_one_warning_without_matplotlib(block, tmp_path):
    log = {"epoch": np.arange(2.0), "loss": np.ones(2), "val_loss": np.ones(2)}
    block("matplotlib")
    with pytest.warns(UserWarning, match="matplotlib: pip install 'keras-crl\\[study\\]'"):
        run_folder.plot_curves(log, tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.once_per_suite
def test_the_demo_without_scikit_learn_is_one_line_naming_the_extra(
    block, capsys, monkeypatch, tmp_path
):
    from keras_crl import cli

    monkeypatch.chdir(tmp_path)
    block("sklearn")
    assert cli.main([]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(
        "error: the digits data set needs scikit-learn: pip install 'keras-crl[data]'"
    ), line
