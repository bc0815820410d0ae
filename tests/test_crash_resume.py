"""A run killed with SIGKILL mid-epoch resumes to the same weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_crl.compare import read_weights
from keras_crl.train import read_log

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "--epochs", "5", "--batch-size", "8", "--lr", "0.02", "--verbose", "0",
        "--backend", keras.backend.backend()]


def cli(run_dir, *extra):
    return [sys.executable, "-m", "keras_crl.cli", *ARGS, "--run-dir", str(run_dir), *extra]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run(cli(tmp_path / "full"), check=True, env=env, cwd=ROOT, timeout=600,
                   capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(cli(run), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = run / "state.npz"
    deadline = time.time() + 300
    # Wait for the end of epoch 1 (the checkpoint names the next epoch), then
    # kill while epoch 2 runs: its 162 steps take longer than 0.1 s.
    while time.time() < deadline:
        if state.exists() and int(np.load(state)["epoch"]) >= 1:
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run / "last.weights.h5").exists()
    assert int(np.load(state)["epoch"]) in (1, 2)

    subprocess.run(cli(run, "--resume"), check=True, env=env, cwd=ROOT, timeout=600,
                   capture_output=True)
    full, resumed = read_weights(tmp_path / "full/last.weights.h5"), read_weights(run / "last.weights.h5")
    for key in full:
        np.testing.assert_allclose(resumed[key], full[key], rtol=1e-5, atol=1e-6, err_msg=key)
    assert list(read_log(run / "log.csv")["epoch"]) == [0, 1, 2, 3, 4]
    assert not list(run.glob("*.tmp"))
