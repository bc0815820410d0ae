"""Switching KERAS_BACKEND changes nothing but speed: the proof.

Each backend computes in its own process (`worker.py`); this test, in the
parent, compares what they wrote.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BACKENDS = ("tensorflow", "torch", "jax")
ROOT = Path(__file__).resolve().parents[2]


def _run_stage(stage, out_dir):
    procs = {}
    for backend in BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        procs[backend] = subprocess.Popen(
            [sys.executable, "-m", "tests.cross_backend.worker", stage, str(out_dir)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
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
    return trained, evaluated


def _pairs(results, prefix):
    ref = results["tensorflow"]
    keys = sorted(k for k in ref if k.startswith(prefix))
    assert keys, prefix
    for backend in BACKENDS[1:]:
        for key in keys:
            yield backend, key, ref[key], results[backend][key]


def test_loss_values_and_gradients_agree(results):
    trained, _ = results
    for backend, key, a, b in _pairs(trained, "loss/"):
        # 1e-6, relative for values above 1: float32 resolves 30.0 to 2e-6.
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, err_msg=f"{backend} {key}")
        assert np.isfinite(a).all(), key


def test_same_batches_on_every_backend(results):
    trained, _ = results
    for backend, key, a, b in _pairs(trained, "data/"):
        assert list(a) == list(b), backend
    assert len(set(trained["jax"]["data/digests"])) == len(trained["jax"]["data/digests"])


def test_zoo_forward_passes_agree(results):
    trained, _ = results
    for backend, key, a, b in _pairs(trained, "zoo/"):
        # 1e-4 on the logits' own scale: randomly weighted deep nets without
        # a final normalisation reach logits of ~1e3.
        scale = max(1.0, np.abs(a).max())
        np.testing.assert_allclose(b / scale, a / scale, rtol=0, atol=1e-4, err_msg=f"{backend} {key}")


@pytest.mark.parametrize("recipe", ["sgd", "paper"])
def test_training_agrees(results, recipe):
    trained, _ = results
    prefix = f"train/{recipe}/jit=False/"
    for backend, key, a, b in _pairs(trained, prefix):
        if key.endswith("losses"):
            assert len(a) == 20
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-4, err_msg=f"{backend} {key}")
        else:
            scale = max(np.abs(a).max(), 1e-3)
            assert np.abs(b - a).max() <= 1e-3 * scale, f"{backend} {key}"


def test_jit_training_agrees_with_eager(results):
    trained, _ = results
    for backend in ("tensorflow", "jax"):
        eager = trained[backend]["train/sgd/jit=False/losses"]
        jitted = trained[backend]["train/sgd/jit=True/losses"]
        np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-4, err_msg=backend)
    np.testing.assert_allclose(
        trained["jax"]["train/sgd/jit=True/losses"],
        trained["tensorflow"]["train/sgd/jit=True/losses"], rtol=0, atol=1e-4,
    )


def test_trained_weights_evaluate_the_same_everywhere(results):
    _, evaluated = results
    keys = sorted(evaluated["tensorflow"])
    assert len(keys) == 8  # 2 recipes x 3 backends + jit on 2 backends
    for key in keys:
        accuracies = [evaluated[b][key][1] for b in BACKENDS]
        losses = [evaluated[b][key][0] for b in BACKENDS]
        assert max(accuracies) - min(accuracies) == 0, (key, accuracies)
        np.testing.assert_allclose(losses, losses[0], rtol=1e-5, err_msg=key)
