"""`--devices N` (docs/guide/devices.md, "Several devices"): two devices against one.

Two virtual CPU devices (JAX, TensorFlow) and two gloo processes (torch).
For each backend one fixture runs two things at the same time: a worker
that records what a step did (`multi_device_worker.py`,
`torch_ddp_worker.py`) and then runs `keras-crl train ... --devices 1`
inside itself (`keras_crl.cli.main`), and the command `keras-crl train ...
--devices 2` in a fresh process (on TensorFlow that process starts with one
CPU, which `keras_crl.parallel` splits; on torch the command restarts itself
under torchrun). The tests judge the recordings and compare the two run
folders.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_crl.run_folder import read_log
from tests.cross_backend.test_multi_host import assert_close_by_name

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
# "Equals one device": to 1e-5, relative.
RTOL = 1e-5

# 64 training images in batches of 16, two epochs: 8 steps. The 144
# validation images fill 9 batches; of the 359 test images, 352 fill 22 and
# the last 7 are dropped with two devices.
TRAIN = ["train", "--epochs", "2", "--limit", "64", "--batch-size", "16", "--verbose", "0"]
# lr 0.02: 8 steps keep float32 reduction-order noise (~1e-7 per step) below
# 2e-6 of every array's scale; the default 0.1 amplifies it to ~3e-5 of some
# momentum buffers by the last step. torch: lr 0 (see its test).
# At lr 0.02 with momentum 0.9 this CNN amplifies one-ulp differences
# (test_consistency uses 0.01 for the same reason): with the loss's
# closed-form gradient XLA fuses the JAX step differently on one and on two
# devices, and after 8 steps the momentum buffers were 2e-5 apart at 0.02;
# at 0.01 every array agrees to 1e-5.
LR = {"jax": "0.01", "tensorflow": "0.01", "torch": "0"}


def run_together(commands, env):
    """Runs the commands at the same time (much of each is a single-threaded
    start-up); returns their stdouts."""
    processes = [
        subprocess.Popen(
            c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    try:
        outputs = [p.communicate(timeout=600) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()  # reaps it and closes its pipes
    for p, (_, stderr) in zip(processes, outputs):
        assert p.returncode == 0, stderr[-4000:]
    return [stdout for stdout, _ in outputs]


def run_backend(backend, tmp, worker):
    """The worker (which also trains `--devices 1`) and `--devices 2`."""
    out, dirs = tmp / "result.npz", {d: tmp / f"devices{d}" for d in (1, 2)}
    train = [*TRAIN, "--backend", backend, "--lr", LR[backend]]
    env = dict(ENV, KERAS_BACKEND=backend)
    if backend == "jax":
        # Both runs see two host devices; TensorFlow gets nothing of the sort.
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    _, stdout = run_together(
        [
            [*worker, str(out), str(dirs[1]), *train],
            [
                sys.executable,
                "-m",
                "keras_crl.cli",
                *train,
                "--devices",
                "2",
                "--run-dir",
                str(dirs[2]),
            ],
        ],
        env,
    )
    # torch: torchrun started two processes; only the chief printed.
    assert stdout.count("test acc") == 1, stdout
    return np.load(out), dirs


def assert_same_step(r):
    """Loss and every weight (batch-norm moving statistics included) after
    one step: many devices vs one."""
    np.testing.assert_allclose(r["multi_loss"], r["single_loss"], rtol=RTOL)
    i = 0
    while f"single{i}" in r:
        np.testing.assert_allclose(
            r[f"multi{i}"], r[f"single{i}"], rtol=RTOL, atol=1e-6, err_msg=f"weight {i}"
        )
        i += 1
    return i


def assert_training_drops_and_evaluation_counts_every_image(r):
    """100 training images, global batch 32: 3 steps per epoch, the last 4
    images dropped; 359 test images: 12 batches, the last padded, all 359
    evaluated."""
    steps = int(r["train_images"]) // 32
    assert steps == 3
    assert np.all(np.asarray(r["steps_per_epoch"]) == steps), r["steps_per_epoch"]
    assert np.all(np.asarray(r["iterations"]) == steps), r["iterations"]
    assert int(r["test_images"]) == int(r["test_total"]) == 359
    # The calibration figures count every image once too (weight-0 padding).
    assert float(r["test_binned"]) == 359
    # metrics.json's test numbers are the saved weights' on all 359 images,
    # evaluated again on one device; the first 352 alone (what dropping the
    # partial batch would give) differ.
    np.testing.assert_allclose(r["test_loss"], r["test_loss_all"], rtol=RTOL)
    np.testing.assert_allclose(r["test_accuracy"], r["test_accuracy_all"], rtol=0, atol=1e-6)
    assert abs(r["test_loss_all"] - r["test_loss_first"]) > 10 * RTOL * abs(r["test_loss_first"])


# --------------------------------------------------------------------------
# JAX and TensorFlow, one process with two devices.


@pytest.fixture(scope="module", params=["jax", "tensorflow"])
def two_devices(request, tmp_path_factory):
    backend = request.param
    r, dirs = run_backend(
        backend,
        tmp_path_factory.mktemp(backend),
        [sys.executable, "-m", "tests.cross_backend.multi_device_worker"],
    )
    return backend, r, dirs


def test_two_devices_split_the_batch(two_devices):
    _, r, _ = two_devices
    # While the train step was traced, the model's input was the global batch
    # of 32 split 16 + 16 over two devices (JAX: the input's sharding;
    # TensorFlow: the batch inside each replica function). One device: 32.
    assert len(r["multi_seen"]) and len(r["single_seen"])
    assert r["multi_seen"].tolist() == [[16, 32, 2]] * len(r["multi_seen"])
    assert r["single_seen"].tolist() == [[32, 32, 1]] * len(r["single_seen"])


def test_two_devices_step_equals_one(two_devices):
    # A conv + batch norm + dense network: the training loss (computed with
    # batch statistics) and all weights after one SGD step, moving statistics
    # included. JAX normalises over the sharded global batch; TensorFlow runs
    # batch norm synchronized (parallel.for_training).
    backend, r, _ = two_devices
    assert assert_same_step(r) == 8
    if backend == "tensorflow":
        # Every replica holds the same copy of every variable (per-replica
        # batch norm would leave each device its own moving statistics).
        assert np.all(r["replica_spread"] == 0.0), r["replica_spread"]


def test_two_devices_drop_in_training_and_pad_in_evaluation(two_devices):
    _, r, _ = two_devices
    assert_training_drops_and_evaluation_counts_every_image(r)


# --------------------------------------------------------------------------
# torch: two processes under torchrun.


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    return run_backend(
        "torch",
        tmp_path_factory.mktemp("torch"),
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "tests.cross_backend.torch_ddp_worker",
        ],
    )


@pytest.fixture
def two_processes(torch_run):
    return torch_run[0]


def test_two_torch_processes_train_on_their_shares(two_processes):
    r = two_processes
    assert int(r["world"]) == 2 and str(r["wrapper"]) == "TorchDataParallel"
    assert int(r["share"]) == 16 and int(r["single_share"]) == 32


def test_two_torch_processes_step_equals_one(two_processes):
    # The logged loss and accuracy are the global batch's (each process's are
    # its half's until AverageReplicas averages them), and the averaged
    # gradients give the one-process step.
    r = two_processes
    np.testing.assert_allclose(r["multi_accuracy"], r["single_accuracy"], rtol=RTOL)
    assert assert_same_step(r) == 4


def test_two_torch_processes_average_batch_norm_statistics(two_processes):
    r = two_processes
    x = r["x"].reshape(32, -1)
    own = {}
    for rank in (0, 1):
        half = x[16 * rank : 16 * (rank + 1)]
        # One step from mean 0 / variance 1 with momentum 0.99, on this
        # process's own half of the batch only.
        own[rank] = (0.01 * half.mean(0), 0.99 + 0.01 * half.var(0))
        np.testing.assert_allclose(r[f"bn_mean_before{rank}"], own[rank][0], rtol=RTOL, atol=1e-7)
        np.testing.assert_allclose(r[f"bn_var_before{rank}"], own[rank][1], rtol=RTOL)
    assert np.abs(own[0][0] - own[1][0]).max() > 1e-3  # the halves differ
    for rank in (0, 1):
        # After averaging, before evaluating: every process holds the mean.
        np.testing.assert_allclose(
            r[f"bn_mean_after{rank}"], (own[0][0] + own[1][0]) / 2, rtol=RTOL, atol=1e-7
        )
        np.testing.assert_allclose(r[f"bn_var_after{rank}"], (own[0][1] + own[1][1]) / 2, rtol=RTOL)
    # The moving mean is linear in the batch: its average is one process's.
    np.testing.assert_allclose(r["bn_mean_after0"], 0.01 * x.mean(0), rtol=RTOL, atol=1e-7)


def test_two_torch_processes_drop_in_training_and_pad_in_evaluation(two_processes):
    assert_training_drops_and_evaluation_counts_every_image(two_processes)


# --------------------------------------------------------------------------
# The command: `keras-crl train --devices 2` against `--devices 1`.


def compare_run_folders(dirs):
    config = {d: json.loads((dirs[d] / "config.json").read_text())["config"] for d in dirs}
    assert config[2].pop("devices") == 2 and config[1].pop("devices") == 1
    config[2].pop("run_dir"), config[1].pop("run_dir")
    assert config[2] == config[1]
    metrics = {d: json.loads((dirs[d] / "metrics.json").read_text()) for d in dirs}
    assert metrics[2]["test_images"] == metrics[1]["test_images"] == 359
    states = {d: np.load(dirs[d] / "state.npz") for d in dirs}
    for d in dirs:
        # Optimizer iterations (state.npz's first optimizer variable):
        # 2 epochs x 64 / 16 steps.
        assert int(states[d]["o0"]) == 8 and int(states[d]["epoch"]) == 2
    return metrics, states


def test_train_command_with_two_devices_equals_one(two_devices):
    # (It would also pass if nothing were split: test_two_devices_split_the_batch
    # shows that data_parallel splits.)
    _, _, dirs = two_devices
    metrics, states = compare_run_folders(dirs)
    logs = {d: read_log(dirs[d] / "log.csv") for d in dirs}
    assert sorted(logs[2]) == sorted(logs[1]) and len(logs[2]["epoch"]) == 2
    for column in logs[1]:  # loss, accuracy, val_loss, val_accuracy
        np.testing.assert_allclose(logs[2][column], logs[1][column], rtol=RTOL, err_msg=column)
    # Weights, batch-norm statistics and optimizer state after 8 steps, to
    # 1e-5 of each array's largest value (elements near 0 of a momentum
    # buffer carry the same absolute noise as the rest).
    assert sorted(states[2].files) == sorted(states[1].files)
    assert_close_by_name(states[2], states[1])
    assert metrics[2]["best_epoch"] == metrics[1]["best_epoch"]
    # Every test image counted once on two devices too (the last 7 padded).
    assert abs(metrics[2]["test_accuracy"] - metrics[1]["test_accuracy"]) <= 1e-6
    np.testing.assert_allclose(metrics[2]["test_loss"], metrics[1]["test_loss"], rtol=RTOL)


def test_train_command_with_two_torch_processes(torch_run):
    """What two torch processes share with one, through the command.

    Each process normalises its 8 images with their own batch statistics, so
    from the first step the forward pass, loss and gradients differ from one
    process's on 16; no training run equals one process. With lr 0 the
    weights stay put, and what is then exactly comparable is the first batch
    norm's moving statistics, whose input (conv1 of the images) is the same
    function of the data in both runs:
    - moving mean: linear in each batch's mean, so the processes' average
      equals one process's;
    - moving variance: the average of the halves' variances, which by the
      law of total variance is the global batch's variance minus the spread
      of the halves' means: never above one process's, and below it where
      the halves' means differ.
    Everything after the first batch norm (its normalised output, the second
    batch norm's statistics, loss, accuracy, validation) differs.
    The equal moving mean also shows that the two processes' shares of every
    shuffled, augmented global batch add up to one process's batch.
    """
    from keras_crl.run_folder import read_weights

    _, dirs = torch_run
    metrics, _ = compare_run_folders(dirs)
    weights = {
        d: {
            name.removeprefix("layers/"): value
            for name, value in read_weights(dirs[d] / "last.weights.h5").items()
            if name.startswith("layers/")
        }
        for d in dirs
    }
    assert sorted(weights[2]) == sorted(weights[1])
    for name in weights[1]:
        if "batch_normalization" not in name or name.endswith(("/0", "/1")):
            # Trainable weights: the same initial weights on every process.
            np.testing.assert_array_equal(weights[2][name], weights[1][name], err_msg=name)
    mean, variance = "batch_normalization/vars/2", "batch_normalization/vars/3"  # bn1
    assert np.abs(weights[1][mean]).max() > 1e-3
    np.testing.assert_allclose(weights[2][mean], weights[1][mean], rtol=RTOL, atol=1e-7)
    # (The halves' means differ little next to their spread: the gap is up to
    # ~6e-5 of the variance, reduction noise ~1e-7.)
    assert np.all(weights[2][variance] <= weights[1][variance] * (1 + 1e-6))
    assert np.any(weights[2][variance] < weights[1][variance] * (1 - RTOL))
    assert np.isfinite(metrics[2]["test_loss"])
