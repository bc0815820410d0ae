"""Switching KERAS_BACKEND changes nothing but speed: the proof.

Each backend computes in its own process (`worker.py`); this test, in the
parent, compares what they wrote.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from keras_crl import backends
from keras_crl.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
# What docs/guide/backends.md claims for 20 SGD steps: the loss to 5e-7 (two float32
# ulps of a loss near 2; measured: 2.4e-7) and every weight to 3e-6 of its
# tensor's scale (measured: 1.4e-6).
LOSS_ATOL = 5e-7
WEIGHT_RTOL = 3e-6


def _run_stage(stage, out_dir, extra_env=None):
    procs = {
        backend: backends.start(
            backend,
            "tests.cross_backend.worker",
            [stage, out_dir],
            extra_env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for backend in BACKENDS
    }
    for backend, proc in procs.items():
        output, _ = proc.communicate(timeout=900)
        if proc.returncode:
            raise RuntimeError(f"{backend} worker failed:\n{output.decode()[-4000:]}")
    return {b: dict(np.load(out_dir / f"{stage}-{b}.npz")) for b in BACKENDS}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("cross_backend")
    trained = _run_stage("train", out_dir)
    evaluated = _run_stage("evaluate", out_dir)
    one_thread = _run_stage("train-1thread", out_dir, backends.thread_env(1))
    return trained, evaluated, one_thread


def _pairs(results, prefix):
    ref = results["tensorflow"]
    keys = sorted(k for k in ref if k.startswith(prefix))
    assert keys, prefix
    for backend in BACKENDS[1:]:
        for key in keys:
            yield backend, key, ref[key], results[backend][key]


def test_loss_values_and_gradients_agree(results):
    trained, _, _ = results
    for backend, key, a, b in _pairs(trained, "loss/"):
        # 1e-6, relative for values above 1: float32 resolves 30.0 to 2e-6.
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, err_msg=f"{backend} {key}")
        assert np.isfinite(a).all(), key


def test_same_batches_on_every_backend(results):
    trained, _, _ = results
    for backend, _, a, b in _pairs(trained, "data/"):
        assert list(a) == list(b), backend
    assert len(set(trained["jax"]["data/digests"])) == len(trained["jax"]["data/digests"])


def test_initial_weights_are_bit_identical(results):
    trained, _, _ = results
    for backend, key, a, b in _pairs(trained, "init/"):
        # Every zoo model, as a digest of its weights' bytes.
        assert str(a) == str(b), f"{backend} {key}"
    for backend, key, a, b in _pairs(trained, "train/sgd/jit=False/init"):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{backend} {key}"


def test_weights_files_move_between_backends_exactly(results):
    trained, evaluated, _ = results
    for writer in BACKENDS:
        for recipe in ("sgd", "paper"):
            name = f"trained-{recipe}-jit=False-{writer}.weights.h5"
            i = 0
            while f"train/{recipe}/jit=False/w{i}" in trained[writer]:
                written = trained[writer][f"train/{recipe}/jit=False/w{i}"]
                for reader in BACKENDS:
                    loaded = evaluated[reader][f"loaded/{name}/w{i}"]
                    assert loaded.dtype == written.dtype, (writer, reader, name, i)
                    assert loaded.tobytes() == written.tobytes(), (writer, reader, name, i)
                i += 1
            assert i > 0, name


def test_zoo_forward_passes_agree(results):
    trained, _, _ = results
    for backend, key, a, b in _pairs(trained, "zoo/"):
        # 1e-4 on the logits' own scale: randomly weighted deep nets without
        # a final normalisation reach logits of ~1e3.
        scale = max(1.0, np.abs(a).max())
        np.testing.assert_allclose(
            b / scale, a / scale, rtol=0, atol=1e-4, err_msg=f"{backend} {key}"
        )


def assert_same_training(a, b, prefix, what):
    """20 steps' losses to LOSS_ATOL, final weights to WEIGHT_RTOL of their scale."""
    assert len(a[f"{prefix}/losses"]) == 20, what
    np.testing.assert_allclose(
        b[f"{prefix}/losses"], a[f"{prefix}/losses"], rtol=0, atol=LOSS_ATOL, err_msg=what
    )
    i = 0
    while f"{prefix}/w{i}" in a:
        wa, wb = a[f"{prefix}/w{i}"], b[f"{prefix}/w{i}"]
        scale = max(np.abs(wa).max(), 1e-3)
        assert np.abs(wb - wa).max() <= WEIGHT_RTOL * scale, f"{what} w{i}"
        i += 1
    assert i > 0, prefix


@pytest.mark.parametrize("threads", ["all", "one"])
@pytest.mark.parametrize("recipe", ["sgd", "paper"])
def test_training_agrees(results, recipe, threads):
    trained, _, one_thread = results
    runs = trained if threads == "all" else one_thread
    for backend in BACKENDS:
        # Against TensorFlow on all threads: the backends agree with each
        # other, and each with itself at another thread count.
        assert_same_training(
            trained["tensorflow"],
            runs[backend],
            f"train/{recipe}/jit=False",
            f"{backend} {threads} threads",
        )


def test_jit_training_agrees_with_eager(results):
    trained, _, _ = results
    for backend in ("tensorflow", "jax"):
        # XLA ran (Keras turns jit_compile off with only a warning where it cannot).
        assert trained[backend]["train/sgd/jit=True/compiled"], backend
        assert not trained[backend]["train/sgd/jit=False/compiled"], backend
        jitted = {
            k.replace("jit=True", "jit=False"): v
            for k, v in trained[backend].items()
            if k.startswith("train/sgd/jit=True/")
        }
        assert_same_training(trained["tensorflow"], jitted, "train/sgd/jit=False", f"{backend} XLA")


def test_trained_weights_evaluate_the_same_everywhere(results):
    _, evaluated, _ = results
    keys = sorted(k for k in evaluated["tensorflow"] if k.startswith("eval/"))
    assert len(keys) == 8  # 2 recipes x 3 backends + jit on 2 backends
    for key in keys:
        accuracies = [evaluated[b][key][1] for b in BACKENDS]
        losses = [evaluated[b][key][0] for b in BACKENDS]
        assert max(accuracies) - min(accuracies) == 0, (key, accuracies)
        np.testing.assert_allclose(losses, losses[0], rtol=1e-5, err_msg=key)
