"""Several processes (docs/guide/devices.md, "Several machines"): two processes against one.

Two processes on localhost, each one device, run the same `keras-crl train`
command (`--coordinator localhost:PORT --num-processes 2`, differing only in
`--process-id`; TensorFlow: `--coordinator localhost:PORT0,localhost:PORT1`,
every process's address) in `multi_host_worker.py`, which records what each process
fed `fit` and `evaluate` and which run-folder files it wrote, then resumes the
run for one more epoch. A third process trains the same three epochs alone.
The tests compare the run folders and judge the recordings.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from keras_crl.run_folder import read_log

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
RTOL = 1e-5
# --cluster-timeout of the join test, and how late past it a process may end.
JOIN_TIMEOUT, JOIN_SLACK = 3, 4
# torch: lr 0, as in test_multi_device.py (each process normalises its share
# with its own batch statistics, so only the batch norm moving mean can equal
# one process's).
LR = {"jax": "0.02", "torch": "0", "tensorflow": "0.02"}
# 64 training images in batches of 16 (8 per process): 4 steps an epoch; two
# epochs, then one more resumed. A constant learning rate: the recipe's
# milestones scale with --epochs, which the resumed run changes.
TRAIN = [
    "train",
    "--epochs",
    "2",
    "--limit",
    "64",
    "--batch-size",
    "16",
    "--schedule",
    "constant",
    "--verbose",
    "0",
]


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def addresses(backend, port):
    """`--coordinator`: process 0's address; TensorFlow: both processes'."""
    if backend == "tensorflow":
        return f"localhost:{port},localhost:{free_port()}"
    return f"localhost:{port}"


def cluster(address, process_id, count=2, timeout=60):
    return [
        "--coordinator",
        address,
        "--num-processes",
        str(count),
        "--process-id",
        str(process_id),
        "--cluster-timeout",
        str(timeout),
    ]


def run_together(commands, env, timeout=300):
    """Runs the commands at the same time; returns `(returncode, stdout,
    stderr, seconds)` of each."""
    start = time.monotonic()
    processes = [
        subprocess.Popen(
            c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    results = []
    try:
        for p in processes:
            stdout, stderr = p.communicate(timeout=timeout)
            results.append((p.returncode, stdout, stderr, time.monotonic() - start))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()  # reaps it and closes its pipes
    return results


def torchrun(port, process_id, worker_args):
    """The command `keras-crl train` restarts itself with on torch
    (`cli.commands.torchrun_command`), running the worker instead of the CLI."""
    from keras_crl import parallel
    from keras_crl.cli import commands

    command = commands.torchrun_command(
        1, worker_args[2:], parallel.Cluster(f"localhost:{port}", 2, process_id, timeout=60)
    )
    module = command.index("keras_crl.cli")
    return [
        *command[:module],
        "tests.cross_backend.multi_host_worker",
        *worker_args[:2],
        *command[module + 1 :],
    ]


@pytest.fixture(scope="module", params=["jax", "torch", "tensorflow"])
def two_processes(request, tmp_path_factory):
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"multihost-{backend}")
    train = [*TRAIN, "--backend", backend, "--lr", LR[backend], "--run-dir", str(tmp / "multi")]
    env = dict(ENV, KERAS_BACKEND=backend)

    def process(i, port, resume_epochs, *extra):
        args = [str(tmp / f"p{i}.npz"), resume_epochs, *train, *extra, *cluster(where[port], i)]
        if backend == "torch":
            # One process per machine under torchrun, as the command starts it.
            return torchrun(port, i, args)
        return [sys.executable, "-m", "tests.cross_backend.multi_host_worker", *args]

    # JAX and TensorFlow resume in the same processes; torch in a second
    # launch (a process joins one torch process group only once).
    port, resume = free_port(), "0" if backend == "torch" else "3"
    where = {port: addresses(backend, port)}  # --coordinator, the same for both
    alone = [
        sys.executable,
        "-m",
        "tests.cross_backend.multi_host_worker",
        str(tmp / "single.npz"),
        "0",
        *[str(tmp / "single") if a == str(tmp / "multi") else a for a in train],
        "--epochs",
        "3",
    ]
    results = run_together([process(0, port, resume), process(1, port, resume), alone], env)
    if backend == "torch":
        port = free_port()
        where[port] = addresses(backend, port)
        again = [process(i, port, "0", "--resume", "--epochs", "3") for i in (0, 1)]
        resumed = run_together(again, env)
        results[:2] = [
            (first[0] or then[0], first[1] + then[1], first[2] + then[2], then[3])
            for first, then in zip(results, resumed)
        ]
    for returncode, _, stderr, _ in results:
        assert returncode == 0, stderr[-4000:]
    # The chief printed the results table (twice), the other process nothing.
    assert [r[1].count("test acc") for r in results] == [2, 0, 1]
    records = {name: np.load(tmp / f"{name}.npz") for name in ("p0", "p1", "single")}
    return backend, records, tmp


def fed(record, kind):
    """The first batch of every `kind` call ("fit" or "evaluate")."""
    calls = sorted(int(k[4:]) for k in record.files if k.startswith("kind"))
    return [record[f"fed{c}"] for c in calls if str(record[f"kind{c}"]) == kind]


def test_each_process_feeds_its_half_of_every_global_batch(two_processes):
    backend, r, _ = two_processes
    # The first training batch (JAX: and the first validation batch): one
    # process alone fed 16 images, the two processes the first and last 8.
    # torch evaluates everything on every process (each has the whole model).
    for kind in ("fit", "evaluate"):
        alone = fed(r["single"], kind)[0]
        assert alone.shape[0] == 16
        if kind == "evaluate" and backend == "torch":
            for p in ("p0", "p1"):
                np.testing.assert_array_equal(fed(r[p], kind)[0], alone)
            continue
        halves = [fed(r[p], kind)[0] for p in ("p0", "p1")]
        np.testing.assert_array_equal(np.concatenate(halves), alone)
        # Every call (the resumed fit, the test set): 8 images a process.
        assert {len(batch) for p in ("p0", "p1") for batch in fed(r[p], kind)} == {8}


def assert_close_by_name(actual, expected):
    """Each array of `expected` (name -> array) against `actual`'s, to RTOL of
    the array's own scale."""
    for name, reference in expected.items():
        np.testing.assert_allclose(
            actual[name],
            reference,
            rtol=RTOL,
            atol=RTOL * np.abs(reference).max(),
            err_msg=name,
        )


def test_two_processes_train_as_one(two_processes):
    # Loss, accuracy, validation (log.csv) and weights, batch-norm statistics
    # and optimizer state (state.npz) after 12 steps: two processes, resumed
    # after 8, against one process in one go.
    backend, _, tmp = two_processes
    if backend == "torch":
        return assert_torch_batch_norm_mean_as_one(tmp)
    logs = {d: read_log(tmp / d / "log.csv") for d in ("multi", "single")}
    assert sorted(logs["multi"]) == sorted(logs["single"]) and len(logs["multi"]["epoch"]) == 3
    for column in logs["single"]:
        np.testing.assert_allclose(
            logs["multi"][column], logs["single"][column], rtol=RTOL, err_msg=column
        )
    # Evaluation counts every test image (359, the last batch of 16 padded)
    # on two processes as on one.
    metrics = {d: json.loads((tmp / d / "metrics.json").read_text()) for d in ("multi", "single")}
    assert metrics["multi"]["test_images"] == metrics["single"]["test_images"] == 359
    for d in ("multi", "single"):
        assert sum(metrics[d]["test_calibration_bins"]["counts"]) == 359, d
    np.testing.assert_allclose(
        metrics["multi"]["test_ece"], metrics["single"]["test_ece"], rtol=RTOL
    )
    assert abs(metrics["multi"]["test_accuracy"] - metrics["single"]["test_accuracy"]) <= 1e-6
    np.testing.assert_allclose(
        metrics["multi"]["test_loss"], metrics["single"]["test_loss"], rtol=RTOL
    )
    states = {d: np.load(tmp / d / "state.npz") for d in ("multi", "single")}
    assert sorted(states["multi"].files) == sorted(states["single"].files)
    assert int(states["multi"]["o0"]) == 12 and int(states["multi"]["epoch"]) == 3
    assert_close_by_name(states["multi"], {n: states["single"][n] for n in states["single"].files})


def assert_torch_batch_norm_mean_as_one(tmp):
    """torch, lr 0 (see test_multi_device's test_train_command_with_two_torch_processes):
    the first batch norm's moving mean, linear in each batch's mean, equals
    one process's after 12 steps; the processes' shares add up to its batches."""
    from keras_crl.run_folder import read_weights

    weights = {
        d: {k: v for k, v in read_weights(tmp / d / "last.weights.h5").items() if "layers/" in k}
        for d in ("multi", "single")
    }
    assert sorted(weights["multi"]) == sorted(weights["single"])
    mean = "layers/batch_normalization/vars/2"
    assert np.abs(weights["single"][mean]).max() > 1e-3
    np.testing.assert_allclose(
        weights["multi"][mean], weights["single"][mean], rtol=RTOL, atol=1e-7
    )
    state = np.load(tmp / "multi" / "state.npz")
    assert int(state["o0"]) == 12 and int(state["epoch"]) == 3


def test_resume_runs_only_the_missing_epoch_on_every_process(two_processes):
    _, r, _ = two_processes
    for process in ("p0", "p1"):
        fits = [c for c in range(20) if str(r[process].get(f"kind{c}", "")) == "fit"]
        assert [int(r[process][f"initial_epoch{c}"]) for c in fits] == [0, 2]
        assert [r[process][f"steps{c}"].tolist() for c in fits] == [[4, 4], [4]]


def test_only_the_chief_writes_the_run_folder(two_processes):
    # Both processes share the folder, so a listing cannot tell who wrote:
    # the worker records every file each process opened for writing,
    # anywhere, HDF5 files included. The second process wrote none at all.
    _, r, _ = two_processes
    assert r["p1"]["writes"].tolist() == [""]
    chief = set(r["p0"]["writes"].tolist())
    assert {
        "log.csv",
        "state.npz.tmp",
        "state.npz",
        "config.json.tmp",
        "metrics.json.tmp",
        "last.weights.h5",
    } <= chief


# --------------------------------------------------------------------------
# Failing in bounded time, naming the coordinator.


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_a_missing_coordinator_or_process_fails_in_time_naming_the_address(backend, tmp_path):
    # Process 1 of 2 with nobody at the coordinator's address, and process 0
    # of 2 whose partner never starts: both give up after --cluster-timeout 3
    # (the engines' defaults: minutes; TensorFlow's: forever), timed from the
    # moment each starts to join (the worker prints it), not from its start
    # (TensorFlow takes seconds to import).
    ports = free_port(), free_port()
    worker = [sys.executable, "-m", "tests.cross_backend.multi_host_worker"]
    commands = [
        [
            *worker,
            str(tmp_path / f"p{i}.npz"),
            "0",
            *TRAIN,
            "--backend",
            backend,
            "--run-dir",
            str(tmp_path / f"run{i}"),
            *cluster(addresses(backend, port), i, timeout=JOIN_TIMEOUT),
        ]
        for i, port in enumerate(ports)
    ]
    processes = [
        subprocess.Popen(
            c,
            cwd=ROOT,
            env=dict(ENV, KERAS_BACKEND=backend),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in commands
    ]
    # Each stderr line with the time it arrived: the error line is when the
    # process gave up (TensorFlow's exit after it can take seconds more).
    lines = [[], []]
    readers = [
        threading.Thread(
            target=lambda p, into: into.extend((time.monotonic(), line) for line in p.stderr),
            args=(p, into),
            daemon=True,
        )
        for p, into in zip(processes, lines)
    ]
    for reader in readers:
        reader.start()
    try:
        for process in processes:
            process.wait(timeout=120)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        for reader, process in zip(readers, processes):
            reader.join(timeout=10)  # the pipe's end reached
            process.stderr.close()
    for process, port, timed in zip(processes, ports, lines):
        stderr = "".join(line for _, line in timed)
        assert process.returncode == 2, stderr[-4000:]
        gave_up = [
            t
            for t, line in timed
            if f"could not join the cluster at coordinator localhost:{port} within "
            f"{JOIN_TIMEOUT} s" in line
        ]
        joining = [float(line.split()[-1]) for _, line in timed if "test: joining at" in line]
        assert len(gave_up) == len(joining) == 1, stderr[-4000:]
        # Not before the time-out, and within a few seconds of it (a loaded
        # machine's scheduling; the engines' own waits are minutes).
        waited = gave_up[0] - joining[0]
        assert JOIN_TIMEOUT <= waited < JOIN_TIMEOUT + JOIN_SLACK, waited


# --------------------------------------------------------------------------
# A streaming folder: each process decodes only its own share.


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    """`keras-crl train` on a folder of JPEGs (`folder_stream`), one epoch on
    JAX: two processes, and one alone."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("multihost-stream")
    rng = np.random.default_rng(0)
    for i in range(100):
        (tmp / "jpegs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp / "jpegs" / f"c{i % 2}" / f"{i:03d}.jpg")
    # 100 files: 20 to test, 16 to validate, 64 to train (4 batches of 16, 8
    # a process).
    train = [
        "train",
        "--backend",
        "jax",
        "--dataset",
        "folder_stream",
        "--data-dir",
        str(tmp / "jpegs"),
        "--image-size",
        "8",
        # (Not 0: with no validation images two processes end in a
        # ZeroDivisionError in PaddedBatches.loss_scale, a bug reported.)
        "--validation-split",
        "0.2",
        *["--epochs", "1", "--batch-size", "16", "--lr", "0.02", "--schedule", "constant"],
        *["--verbose", "0"],
    ]
    worker = [sys.executable, "-m", "tests.cross_backend.multi_host_worker"]
    where = addresses("jax", free_port())
    results = run_together(
        [
            *(
                [*worker, str(tmp / f"p{i}.npz"), "0", *train, "--run-dir", str(tmp / "multi")]
                + cluster(where, i)
                for i in (0, 1)
            ),
            [*worker, str(tmp / "single.npz"), "0", *train, "--run-dir", str(tmp / "single")],
        ],
        dict(ENV, KERAS_BACKEND="jax"),
    )
    for returncode, _, stderr, _ in results:
        assert returncode == 0, stderr[-4000:]
    return {name: np.load(tmp / f"{name}.npz") for name in ("p0", "p1", "single")}, tmp


def test_each_process_decodes_only_its_own_files(streamed):
    records, _ = streamed
    decoded = {name: records[name]["decoded"].tolist() for name in records}
    # One process alone decoded all 64 training files (the first batch twice:
    # train() builds the metrics on it before fit).
    assert len(set(decoded["single"])) == 64
    # Each process decoded its half of every batch and none of the other's;
    # together, what one process alone decoded, as often.
    for name in ("p0", "p1"):
        assert len(set(decoded[name])) == 32, name
    assert not set(decoded["p0"]) & set(decoded["p1"])
    assert sorted(decoded["p0"] + decoded["p1"]) == sorted(decoded["single"])


def test_streamed_processes_train_as_one(streamed):
    from keras_crl.run_folder import read_weights

    _, tmp = streamed
    weights = {d: read_weights(tmp / d / "last.weights.h5") for d in ("multi", "single")}
    assert sorted(weights["multi"]) == sorted(weights["single"])
    assert_close_by_name(weights["multi"], weights["single"])
    metrics = {d: json.loads((tmp / d / "metrics.json").read_text()) for d in ("multi", "single")}
    assert metrics["multi"]["test_images"] == metrics["single"]["test_images"]
    assert abs(metrics["multi"]["test_accuracy"] - metrics["single"]["test_accuracy"]) <= 1e-6


# --------------------------------------------------------------------------
# torch across nodes at lr > 0: without batch norm (which each torch process
# computes over its own share), two nodes train as one process.


def test_two_torch_nodes_without_batch_norm_train_as_one(tmp_path):
    from keras_crl.run_folder import read_weights

    train = [
        *TRAIN,
        *["--epochs", "1", "--backend", "torch", "--lr", "0.05", "--no-batch-norm"],
    ]
    port = free_port()
    worker = [sys.executable, "-m", "tests.cross_backend.multi_host_worker"]
    results = run_together(
        [
            *(
                torchrun(
                    port,
                    i,
                    [str(tmp_path / f"p{i}.npz"), "0", *train, "--run-dir", str(tmp_path / "multi")]
                    + cluster(f"localhost:{port}", i),
                )
                for i in (0, 1)
            ),
            [
                *worker,
                str(tmp_path / "single.npz"),
                "0",
                *train,
                "--run-dir",
                str(tmp_path / "one"),
            ],
        ],
        dict(ENV, KERAS_BACKEND="torch"),
    )
    for returncode, _, stderr, _ in results:
        assert returncode == 0, stderr[-4000:]
    # The layers' weights (the chief saves its model, without the DDP
    # wrapper's optimizer).
    weights = {
        d: {
            k: v
            for k, v in read_weights(tmp_path / d / "last.weights.h5").items()
            if "layers/" in k
        }
        for d in ("multi", "one")
    }
    assert sorted(weights["multi"]) == sorted(weights["one"]) and len(weights["one"]) == 6
    assert not [k for k in weights["one"] if "normalization" in k]
    assert_close_by_name(weights["multi"], weights["one"])
    logs = {d: read_log(tmp_path / d / "log.csv") for d in ("multi", "one")}
    np.testing.assert_allclose(logs["multi"]["loss"], logs["one"]["loss"], rtol=RTOL)
