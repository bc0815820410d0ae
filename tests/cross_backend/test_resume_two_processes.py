"""Two torch processes (DDP, gloo) killed inside an epoch resume exactly.

The whole torchrun process group is killed with SIGKILL after step 4 of
epoch 1 (both processes paused there by `tests.train_probe`), as when a
machine is taken away; the newest checkpoint is then (1, 3), written by the
chief once both processes had reached it. Resumed under torchrun, each
process trains only the steps that were left (its probe records them, one
file per rank), starting from its own batch-norm statistics and metric
totals, and the run ends with the uninterrupted two-process run's weights and
`log.csv`, exactly.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_crl.run_folder import read_log
from keras_crl.run_folder import read_weights
from keras_crl.run_folder import state_position
from tests.train_probe import probe_args
from tests.train_probe import read_progress

ROOT = Path(__file__).resolve().parents[2]
EPOCHS, STEPS = 3, 4  # 128 images in global batches of 32
TRAIN = [
    "train",
    "--backend",
    "torch",
    "--devices",
    "2",
    "--epochs",
    str(EPOCHS),
    "--batch-size",
    "32",
    "--limit",
    "128",
    "--lr",
    "0.02",
    "--verbose",
    "0",
    "--checkpoint-every",
    "3",
]


def start(run_dir, progress, *extra, pause=()):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        *probe_args(progress, STEPS, [*TRAIN, "--run-dir", str(run_dir), *extra], pause),
    ]
    env = dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="1")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group to kill whole
    )


def finish(proc):
    try:
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output[-4000:]


def survivors(marker, wait_s=20):
    """PIDs of processes whose command line names `marker`, after `wait_s`."""
    deadline = time.time() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                command = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if entry.name.isdigit() and str(marker).encode() in command:
                found.append(int(entry.name))
        if not found or time.time() > deadline:
            return found
        time.sleep(0.2)


def steps_between(first, stop):
    begin, end = first[0] * STEPS + first[1], stop[0] * STEPS + stop[1]
    return [divmod(g, STEPS) for g in range(begin, end)]


def progress_of(progress):
    return [read_progress(f"{progress}.{rank}") for rank in (0, 1)]


def test_two_processes_killed_inside_an_epoch_resume_exactly(tmp_path):
    full, run = tmp_path / "full", tmp_path / "killed"
    reference = start(full, tmp_path / "full.progress")
    proc = start(run, tmp_path / "p0", pause=["--pause-at", "1:2"])
    try:
        deadline = time.time() + 300
        while not all(
            Path(f"{tmp_path / 'p0'}.{rank}").exists()
            and "paused" in Path(f"{tmp_path / 'p0'}.{rank}").read_text()
            for rank in (0, 1)
        ):
            assert proc.poll() is None, proc.communicate()[0][-4000:]
            assert time.time() < deadline, "the run never reached the kill point"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)  # reaps it and closes its output pipe
    # torchrun's workers run in sessions of their own, out of the killed
    # group: a paused one must still go (train_probe.pause), not linger.
    assert not survivors(tmp_path / "p0"), "a killed run's worker outlived it"
    finish(reference)
    assert (
        progress_of(tmp_path / "full.progress")
        == [(steps_between((0, 0), (EPOCHS, 0)), list(range(EPOCHS)))] * 2
    )
    # The checkpoint of (1, 3) was taken after step 2, before the pause.
    assert progress_of(tmp_path / "p0") == [(steps_between((0, 0), (1, 3)), [0])] * 2
    assert state_position(run / "state.npz") == (1, 3)
    with np.load(run / "state.npz") as state:
        # Each process's own batch-norm statistics and metric totals (its
        # loss over its own share), gathered by the chief.
        for name in ("n0", "m0"):
            assert not np.array_equal(state[f"r0_{name}"], state[f"r1_{name}"]), name

    finish(start(run, tmp_path / "p1", "--resume"))
    assert progress_of(tmp_path / "p1") == [(steps_between((1, 3), (EPOCHS, 0)), [1, 2])] * 2
    reference_weights = read_weights(full / "last.weights.h5")
    resumed = read_weights(run / "last.weights.h5")
    for key in reference_weights:
        np.testing.assert_array_equal(resumed[key], reference_weights[key], err_msg=key)
    log, reference_log = read_log(run / "log.csv"), read_log(full / "log.csv")
    assert sorted(log) == sorted(reference_log)
    for column in reference_log:
        np.testing.assert_array_equal(log[column], reference_log[column], err_msg=column)


# --------------------------------------------------------------------------
# JAX and TensorFlow: two processes of a cluster on localhost killed with
# SIGKILL inside epoch 1 (both paused there by the probe), then resumed by
# two fresh processes, equal one process training uninterrupted, to the
# `1e-5` the guide states for several processes (docs/guide/devices.md).


def _cluster_process(run_dir, progress, backend, port_flags, i, *extra, pause=()):
    from tests.cross_backend.test_multi_host import TRAIN as HOST_TRAIN

    train = [*HOST_TRAIN, "--backend", backend, "--lr", "0.02", "--run-dir", str(run_dir)]
    command = [
        sys.executable,
        *probe_args(progress, 4, [*train, *extra, *port_flags(i)], pause),
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_cluster_killed_inside_an_epoch_resumes_in_fresh_processes(backend, tmp_path):
    from tests.cross_backend.test_multi_host import RTOL
    from tests.cross_backend.test_multi_host import addresses
    from tests.cross_backend.test_multi_host import assert_close_by_name
    from tests.cross_backend.test_multi_host import cluster
    from tests.cross_backend.test_multi_host import free_port

    def flags():
        where = addresses(backend, free_port())
        return lambda i: cluster(where, i)

    # JAX checkpoints every 3 steps; TensorFlow's processes at epoch ends
    # only (docs/guide/devices.md).
    extra = ["--checkpoint-every", "3"] if backend == "jax" else []
    run, one = tmp_path / "killed", tmp_path / "one"
    started = []  # every process this test starts, killed at its end if still running
    try:
        started.append(_cluster_process(one, tmp_path / "one.progress", backend, lambda i: [], 0))
        first = flags()
        started += [
            _cluster_process(
                run, tmp_path / f"p{i}", backend, first, i, *extra, pause=["--pause-at", "1:2"]
            )
            for i in (0, 1)
        ]
        deadline = time.time() + 300
        while not all(
            (tmp_path / f"p{i}").exists() and "paused" in (tmp_path / f"p{i}").read_text()
            for i in (0, 1)
        ):
            for proc in started[1:]:
                assert proc.poll() is None, proc.communicate()[0][-4000:]
            assert time.time() < deadline, "the run never reached the kill point"
            time.sleep(0.05)
        for proc in started[1:]:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)  # reaps it and closes its output pipe
        # Killed after step 2 of epoch 1: the newest checkpoint is inside the
        # run (JAX: 3 steps after epoch 0's end, (1, 3); TensorFlow: epoch 0's end).
        first_step = (1, 3) if backend == "jax" else (1, 0)
        assert state_position(run / "state.npz") == first_step
        again = flags()
        started += [
            _cluster_process(run, tmp_path / f"r{i}", backend, again, i, *extra, "--resume")
            for i in (0, 1)
        ]
        for proc in [started[0], *started[3:]]:
            finish(proc)
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
    # The fresh processes trained only what was left.
    for i in (0, 1):
        steps, ended = read_progress(tmp_path / f"r{i}")
        assert steps == [(1, step) for step in range(first_step[1], 4)] and ended == [1], steps
    expected = read_weights(one / "last.weights.h5")
    got = read_weights(run / "last.weights.h5")
    assert sorted(got) == sorted(expected)
    assert_close_by_name(got, expected)
    log, reference_log = read_log(run / "log.csv"), read_log(one / "log.csv")
    assert sorted(log) == sorted(reference_log) and len(log["epoch"]) == 2
    for column in reference_log:
        np.testing.assert_allclose(log[column], reference_log[column], rtol=RTOL, err_msg=column)
