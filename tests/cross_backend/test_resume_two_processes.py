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
