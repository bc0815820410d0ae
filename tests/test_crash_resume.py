"""A run killed with SIGKILL, inside an epoch and inside a save, resumes exactly.

Training is deterministic, so equal final weights alone would also come from
a rerun that ignored the checkpoint. Each process therefore runs under
`tests.train_probe`, which records every step it trains (counted by the
optimizer): the test checks where each kill landed and that each resumed
process trained exactly the steps that were left, no more, no fewer.

One killed run, checkpointing every 3 steps and keeping 2 checkpoints:

1. killed after step 4 of epoch 1 (checkpoint: epoch 1, step 3);
2. resumed, then killed inside the save of (2, 6), after the temporary file
   is written and before it replaces `state.npz` (checkpoint: (2, 3));
3. resumed to the end: the same weights and every `log.csv` row (loss and
   accuracy of each epoch, including the two interrupted ones) as the
   uninterrupted run.

A copy of the run after the first kill resumes on another backend.
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_crl.run_folder import read_log
from keras_crl.run_folder import read_weights
from keras_crl.run_folder import state_position
from tests.train_probe import probe_args
from tests.train_probe import read_progress

ROOT = Path(__file__).resolve().parents[1]
BACKEND = keras.backend.backend()
# Resuming on "the next" backend covers every pair's direction once per suite.
OTHER = {"tensorflow": "torch", "torch": "jax", "jax": "tensorflow"}[BACKEND]
EPOCHS, STEPS = 4, 8  # 256 images in batches of 32
ARGS = [
    "train",
    "--epochs",
    str(EPOCHS),
    "--batch-size",
    "32",
    "--limit",
    "256",
    "--lr",
    "0.02",
    "--verbose",
    "0",
]
CHECKPOINTS = ["--checkpoint-every", "3", "--keep-checkpoints", "2"]


def start(run_dir, progress, backend, *extra, pause=()):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    cli_args = [*ARGS, "--backend", backend, "--run-dir", str(run_dir), *extra]
    command = [sys.executable, *probe_args(progress, STEPS, cli_args, pause)]
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc):
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-4000:]


def kill_when_paused(proc, progress):
    deadline = time.time() + 300
    while not (progress.exists() and "paused" in progress.read_text()):
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.time() < deadline, "the run never reached the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)  # reaps it and closes its output pipe
    assert proc.returncode == -signal.SIGKILL


def steps_between(first, stop):
    """The (epoch, step) pairs from `first` up to, not including, `stop`."""
    begin, end = first[0] * STEPS + first[1], stop[0] * STEPS + stop[1]
    return [divmod(g, STEPS) for g in range(begin, end)]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The uninterrupted run (no mid-epoch checkpoints)."""
    folder = tmp_path_factory.mktemp("full")
    finish(start(folder / "run", folder / "progress", BACKEND, "--checkpoint-every", "epoch"))
    assert read_progress(folder / "progress") == (
        steps_between((0, 0), (EPOCHS, 0)),
        list(range(EPOCHS)),
    )
    assert not list((folder / "run").glob("state-*.npz"))
    return folder / "run"


def assert_same_run(run, full, weights_rtol=0.0, log_rtol=0.0):
    reference = read_weights(full / "last.weights.h5")
    resumed = read_weights(run / "last.weights.h5")
    for key in reference:
        scale = max(np.abs(reference[key]).max(), 1e-3)
        np.testing.assert_allclose(
            resumed[key], reference[key], rtol=0, atol=weights_rtol * scale, err_msg=key
        )
    log, reference_log = read_log(run / "log.csv"), read_log(full / "log.csv")
    assert list(log["epoch"]) == list(range(EPOCHS))
    assert sorted(log) == sorted(reference_log)
    for column in reference_log:
        np.testing.assert_allclose(
            log[column], reference_log[column], rtol=log_rtol, err_msg=column
        )


def test_sigkill_inside_an_epoch_and_a_save_then_resume_exactly(tmp_path, full):
    run = tmp_path / "killed"
    progress = [tmp_path / f"progress{i}" for i in range(3)]

    # 1. Killed after step 4 of epoch 1: the newest checkpoint is (1, 3).
    proc = start(run, progress[0], BACKEND, *CHECKPOINTS, pause=["--pause-at", "1:4"])
    kill_when_paused(proc, progress[0])
    assert read_progress(progress[0]) == (steps_between((0, 0), (1, 5)), [0])
    assert state_position(run / "state.npz") == (1, 3)
    assert state_position(run / "state-0001-000000.npz") == (1, 0)  # keep 2
    assert not (run / "last.weights.h5").exists()
    other = tmp_path / "other"
    shutil.copytree(run, other)

    # 2. Resumed at (1, 3); killed inside the save of (2, 6): its temporary
    # file is complete, `state.npz` still the previous checkpoint.
    pause = ["--pause-in-save", "2:6"]
    proc = start(run, progress[1], BACKEND, *CHECKPOINTS, "--resume", pause=pause)
    kill_when_paused(proc, progress[1])
    # (Step 5 trained; the probe, the last callback, had not yet seen it.)
    assert read_progress(progress[1]) == (steps_between((1, 3), (2, 5)), [1])
    assert (run / "state.npz.tmp").exists()
    assert state_position(run / "state.npz") == (2, 3)
    # The save had named (2, 3) by its position and not yet pruned (2, 0).
    assert sorted(p.name for p in run.glob("state-*.npz")) == [
        "state-0002-000000.npz",
        "state-0002-000003.npz",
    ]

    # 3. Resumed at (2, 3) to the end: the uninterrupted run's weights and log.
    finish(start(run, progress[2], BACKEND, *CHECKPOINTS, "--resume"))
    assert read_progress(progress[2]) == (steps_between((2, 3), (EPOCHS, 0)), [2, 3])
    if BACKEND == "tensorflow":
        # One TensorFlow resume in two ended 1 float32 ulp away (uninterrupted
        # runs repeat bit for bit): checked to float32 rounding there.
        assert_same_run(run, full, weights_rtol=1e-6, log_rtol=1e-6)
    else:
        assert_same_run(run, full)
    assert state_position(run / "state.npz") == (EPOCHS, 0)
    assert sorted(p.name for p in run.glob("state-*.npz")) == ["state-0003-000006.npz"]
    assert not list(run.glob("*.tmp"))

    # The copy from the first kill, resumed on another backend: again only
    # the steps that were left, to the cross-backend agreement.
    finish(start(other, tmp_path / "other.progress", OTHER, "--resume"))
    assert read_progress(tmp_path / "other.progress") == (
        steps_between((1, 3), (EPOCHS, 0)),
        [1, 2, 3],
    )
    assert_same_run(other, full, weights_rtol=1e-5, log_rtol=1e-5)
