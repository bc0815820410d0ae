"""Data parallelism on two virtual CPU devices equals one device."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def assert_same_step(r):
    """The worker's loss and four weights after one step: many devices vs one."""
    np.testing.assert_allclose(r["multi_loss"], r["single_loss"], rtol=1e-5)
    i = 0
    while f"single{i}" in r:
        np.testing.assert_allclose(r[f"multi{i}"], r[f"single{i}"], rtol=1e-5, atol=1e-6)
        i += 1
    assert i == 4


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_devices_equal_one(tmp_path, backend):
    out = tmp_path / "result.npz"
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "tests.cross_backend.multi_device_worker", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    r = np.load(out)
    assert list(r["replicas"]) == [1, 2]
    # Divided once, not twice (nor summed) across the replicas.
    assert_same_step(r)


def test_two_torch_processes_equal_one(tmp_path):
    out = tmp_path / "result.npz"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "tests.cross_backend.torch_ddp_worker", str(out)],
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
        text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    r = np.load(out)
    assert int(r["world"]) == 2 and str(r["wrapper"]) == "TorchDataParallel"
    assert int(r["share"]) == 16  # half of the global batch of 32
    # Each process updated its moving statistics from its own half; they are
    # averaged before evaluating, so every process evaluates the same model.
    np.testing.assert_array_equal(r["bn_rank0"], r["bn_rank1"])
    # The logged loss is the global batch's, and the averaged gradients give
    # the one-process step (summed or unsynchronised gradients would not).
    assert_same_step(r)


def test_train_command_with_two_torch_processes(tmp_path):
    import json

    result = subprocess.run(
        [sys.executable, "-m", "keras_crl.cli", "train", "--backend", "torch", "--devices", "2",
         "--epochs", "1", "--limit", "128", "--batch-size", "32", "--verbose", "0",
         "--run-dir", str(tmp_path)],
        cwd=ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), capture_output=True,
        text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # torchrun started two processes; only the chief wrote and printed.
    assert result.stdout.count("test acc") == 1, result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isfinite(metrics["test_loss"])
    assert json.loads((tmp_path / "config.json").read_text())["config"]["devices"] == 2


def test_train_command_with_two_jax_devices(tmp_path):
    import json

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [sys.executable, "-m", "keras_crl.cli", "train", "--backend", "jax", "--devices", "2",
         "--epochs", "1", "--limit", "128", "--batch-size", "32", "--verbose", "0",
         "--run-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert np.isfinite(metrics["test_loss"])
    assert json.loads((tmp_path / "config.json").read_text())["config"]["devices"] == 2
