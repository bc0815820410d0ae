"""A run killed with SIGKILL inside an epoch resumes, on this backend or another.

Training is deterministic, so equal final weights alone would also come from
a rerun that ignored the checkpoint. Each process therefore runs under
`tests.train_probe`, which records every step it trains: the test checks
that the kill landed inside an epoch and that each resumed process trained
exactly the epochs that were left.
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

from keras_crl.run_folder import read_log
from keras_crl.run_folder import read_weights
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
KILL_AT = (2, 3)  # epoch 3 of 4 (0-based 2), after its 4th step


def start(run_dir, progress, backend, *extra, pause_at=None):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    probe = ["--pause-at", ":".join(map(str, pause_at))] if pause_at else []
    command = [
        sys.executable,
        "-m",
        "tests.train_probe",
        str(progress),
        *probe,
        "--",
        *ARGS,
        "--backend",
        backend,
        "--run-dir",
        str(run_dir),
        *extra,
    ]
    return subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(proc):
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-4000:]


def all_steps(epochs):
    return [(e, s) for e in epochs for s in range(STEPS)]


def test_sigkill_inside_an_epoch_then_resume_here_and_on_another_backend(tmp_path):
    finish(start(tmp_path / "full", tmp_path / "full.progress", BACKEND))
    assert read_progress(tmp_path / "full.progress") == (
        all_steps(range(EPOCHS)),
        list(range(EPOCHS)),
    )

    run, progress = tmp_path / "killed", tmp_path / "killed.progress"
    proc = start(run, progress, BACKEND, pause_at=KILL_AT)
    deadline = time.time() + 300
    while not (progress.exists() and "paused" in progress.read_text()):
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.time() < deadline, "the run never reached the kill point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # The kill landed inside epoch 2: some of its steps trained, the epoch
    # never ended, and the checkpoint is the end of epoch 1.
    steps, ended = read_progress(progress)
    assert steps == all_steps(range(2)) + [(2, s) for s in range(KILL_AT[1] + 1)]
    assert ended == [0, 1]
    assert int(np.load(run / "state.npz")["epoch"]) == 2
    assert not (run / "last.weights.h5").exists()
    other = tmp_path / "other"
    shutil.copytree(run, other)

    # Resumed on the same backend: only epochs 2 and 3 train, and the run
    # ends where the uninterrupted one did.
    finish(start(run, tmp_path / "resumed.progress", BACKEND, "--resume"))
    assert read_progress(tmp_path / "resumed.progress") == (all_steps([2, 3]), [2, 3])
    full = read_weights(tmp_path / "full/last.weights.h5")
    resumed = read_weights(run / "last.weights.h5")
    for key in full:
        if BACKEND == "tensorflow":
            # One TensorFlow resume in two ended 1 float32 ulp away (uninterrupted
            # runs repeat bit for bit): checked to float32 rounding there.
            np.testing.assert_allclose(resumed[key], full[key], rtol=1e-6, atol=1e-9, err_msg=key)
        else:
            np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)
    assert list(read_log(run / "log.csv")["epoch"]) == list(range(EPOCHS))
    np.testing.assert_allclose(
        read_log(run / "log.csv")["loss"], read_log(tmp_path / "full/log.csv")["loss"], rtol=1e-6
    )
    assert not list(run.glob("*.tmp"))

    # Resumed on another backend from the same checkpoint: again only the
    # epochs that were left, to the cross-backend agreement of the weights.
    finish(start(other, tmp_path / "other.progress", OTHER, "--resume"))
    assert read_progress(tmp_path / "other.progress") == (all_steps([2, 3]), [2, 3])
    moved = read_weights(other / "last.weights.h5")
    for key in full:
        scale = max(np.abs(full[key]).max(), 1e-3)
        assert np.abs(moved[key] - full[key]).max() <= 1e-5 * scale, (OTHER, key)
    log = read_log(other / "log.csv")
    assert list(log["epoch"]) == list(range(EPOCHS))
    np.testing.assert_allclose(log["loss"], read_log(tmp_path / "full/log.csv")["loss"], rtol=1e-5)
