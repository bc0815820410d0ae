"""The keras-crl command line."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import keras
import pytest

from keras_crl import cli
from keras_crl.cli import commands


def test_list(capsys):
    assert cli.main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    assert "resnet34" in out and "small_cnn" in out and "cifar100" in out and "digits" in out


def cluster_flags(coordinator, count, index):
    return [
        "train",
        "--coordinator",
        coordinator,
        "--num-processes",
        str(count),
        "--process-id",
        str(index),
    ]


def test_user_mistakes_are_one_line_and_exit_2(tmp_path, capsys):
    for args, message in (
        (["train", "--model", "resnet9000"], "Valid models:.*resnet18"),
        (["train", "--dataset", "imagenet21k"], "Valid datasets:.*cifar10"),
        (["train", "--dataset", "folder", "--data-dir", str(tmp_path / "none")], "does not exist"),
        (["train", "--dataset", "folder"], "needs --data-dir"),
        (["study", "--extra", "crl:1"], "crl:ALPHA:BETA"),
        (["study", "--extra", "nowhere:Loss"], "Cannot import the loss 'nowhere:Loss'"),
        (["compare-backends", "--backends", "numpy"], "Valid backends"),
        (["train", "--checkpoint-every", "10minutes"], "checkpoint-every '10minutes'"),
        (["train", "--checkpoint-every", "0"], "checkpoint-every '0'"),
        (["train", "--keep-checkpoints", "0"], "keep-checkpoints 0"),
        (["train", "--coordinator", "localhost:1"], "go together"),
        (
            ["train", "--model", "resnet18", "--no-batch-norm"],
            "--no-batch-norm: applies to small_cnn only, not to resnet18",
        ),
        (cluster_flags("localhost", 2, 0), "must be HOST:PORT.*'localhost'"),
        (cluster_flags("localhost:1", 2, 2), r"process_id must be in \[0, 2\)"),
    ):
        assert (
            cli.main(
                [*args, "--out-dir" if args[0] != "train" else "--run-dir", str(tmp_path / "out")]
            )
            == 2
        ), args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert re.search(f"keras-crl {args[0]}: error: .*{message}", err), err
    with pytest.raises(SystemExit):
        cli.main(["train", "--backend", "numpyy"])


def test_corrupt_weights_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an HDF5 file")
    status = cli.main(
        [
            "train",
            "--init-weights",
            str(bad),
            "--epochs",
            "1",
            "--limit",
            "64",
            "--verbose",
            "0",
            "--run-dir",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and str(bad) in err and len(err.strip().splitlines()) == 1, err


def test_without_tensorflow_an_installed_backend_is_chosen(tmp_path):
    # TensorFlow made unimportable, no backend configured: Keras' default
    # would fail at import; keras-crl picks an installed one and says so.
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # as if not installed: find_spec gives None\n"
        "from keras_crl import cli\n"
        "sys.exit(cli.main(['train', '--list']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)  # no keras.json naming a backend
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "KERAS_BACKEND=torch" in result.stderr and "small_cnn" in result.stdout


def test_demo_prints_a_results_table(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    assert cli.main(["--epochs", "1", "--limit", "128", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "test acc" in out and "\nce " in out and "\ncrl " in out
    for loss in ("ce", "crl"):
        metrics = json.loads((run_dir / loss / "metrics.json").read_text())
        assert metrics["loss"] == loss and metrics["epochs"] == 1


def test_train_with_overrides_and_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "digits",
        "--loss",
        "nllr",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lr",
        "0.02",
        "--limit",
        "96",
        "--recipe",
        "cosine",
        # More epochs on resume: a cosine schedule would change its past rates.
        "--schedule",
        "constant",
        "--verbose",
        "0",
        "--run-dir",
        str(run_dir),
    ]
    assert cli.main(args) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["recipe"]["name"] == "cosine" and config["recipe"]["schedule"] == "constant"
    assert config["recipe"]["batch_size"] == 32
    assert config["config"]["loss"] == "nllr" and config["recipe"]["learning_rate"] == 0.02
    first_rows = (run_dir / "log.csv").read_text().strip().splitlines()
    capsys.readouterr()
    epochs = args.index("--epochs") + 1
    assert cli.main([*args[:epochs], "3", *args[epochs + 1 :], "--resume", "--verbose", "2"]) == 0
    # Keras prints each epoch it trains: the resumed command trains only the third.
    printed = capsys.readouterr().out
    assert "Epoch 3/3" in printed and "Epoch 1/3" not in printed and "Epoch 2/3" not in printed
    log = (run_dir / "log.csv").read_text().strip().splitlines()
    assert len(log) == 4 and log[:3] == first_rows  # the first two epochs kept as they were


def test_backend_flag_switches_backend(tmp_path):
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_crl.cli",
            "train",
            "--backend",
            other,
            "--epochs",
            "1",
            "--limit",
            "64",
            "--verbose",
            "0",
            "--run-dir",
            str(run_dir),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert json.loads((run_dir / "metrics.json").read_text())["backend"] == other


def test_cluster_from_flags_or_keras_environment(monkeypatch, tmp_path, capsys):
    from keras_crl.parallel import Cluster

    parse = cli.build_parser().parse_args
    flags = cluster_flags("10.0.0.1:1234", 2, 1)
    expected = Cluster("10.0.0.1:1234", num_processes=2, process_id=1, timeout=300.0)
    assert commands.cluster_from_args(parse(flags)) == expected
    assert commands.cluster_from_args(parse(["train"])) is None
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234,10.0.0.2:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    assert cli.main(["train", "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing: KERAS_DISTRIBUTION_PROCESS_ID" in err and len(err.splitlines()) == 1, err
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "1")
    every = ("10.0.0.1:1234", "10.0.0.2:1234")
    assert commands.cluster_from_args(parse(["train"])) == dataclasses.replace(
        expected, addresses=every
    )
    # The flag takes every address too (TensorFlow needs them).
    listed = cluster_flags(",".join(every), 2, 1)
    assert commands.cluster_from_args(parse(listed)) == dataclasses.replace(
        expected, addresses=every
    )


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="joins a cluster elsewhere")
def test_tensorflow_processes_need_every_address_one_line_error(tmp_path, capsys):
    assert cli.main([*cluster_flags("localhost:1", 2, 0), "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs every process's address, not only the coordinator's (localhost:1)" in err, err
    assert len(err.splitlines()) == 1
    # Fewer addresses than processes: named before anything starts.
    flags = cluster_flags("localhost:1,localhost:2", 3, 0)
    assert cli.main([*flags, "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "2 addresses (localhost:1, localhost:2) for 3 processes" in err, err


def test_tensorflow_processes_checkpoint_at_epoch_ends_only(monkeypatch):
    # Joined to a TensorFlow cluster (stood in for), a checkpoint inside an
    # epoch would read the metric totals, a collective only the chief joins.
    from keras_crl import parallel

    monkeypatch.setattr(parallel.STATE, "tf_strategy", object())
    parallel.checks_epoch_ends_only(None, None, 0)
    for steps, seconds, start_step in ((500, None, 0), (None, 600.0, 0), (None, None, 3)):
        with pytest.raises(ValueError, match="--checkpoint-every epoch"):
            parallel.checks_epoch_ends_only(steps, seconds, start_step)


LOADED = "print('loaded:', sorted(m for m in ('tensorflow', 'torch', 'jax') if m in sys.modules))\n"


@pytest.mark.once_per_suite
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_flag_loads_no_other_backend(tmp_path, backend):
    # What `import keras` alone loads under that backend (Keras 3.15 imports
    # jax for its Orbax callback whenever jax is installed), against a whole
    # keras-crl run (data, model, loss, fit, evaluate, plots): nothing more.
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    keras_alone = f"import os, sys\nos.environ['KERAS_BACKEND'] = '{backend}'\nimport keras\n"
    run = (
        "import sys\nfrom keras_crl import cli\n"
        f"status = cli.main(['train', '--backend', '{backend}', '--epochs', '1', '--limit', "
        f"'64', '--verbose', '0', '--run-dir', r'{tmp_path / 'run'}'])\n"
    )
    loaded = []
    for code in (keras_alone + LOADED, run + LOADED + "sys.exit(status)\n"):
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        loaded.append(result.stdout.rsplit("loaded: ", 1)[1].strip())
    assert loaded[1] == loaded[0] and "tensorflow" not in loaded[1], loaded
