"""The keras-crl command line."""

import json
import os
import subprocess
import sys

import keras
import pytest

from keras_crl import cli


def test_list(capsys):
    assert cli.main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    assert "resnet34" in out and "small_cnn" in out and "cifar100" in out and "digits" in out


def test_unknown_names_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="Valid models:.*resnet18"):
        cli.main(["train", "--model", "resnet9000", "--run-dir", str(tmp_path)])
    with pytest.raises(ValueError, match="Valid datasets:.*cifar10"):
        cli.main(["train", "--dataset", "imagenet21k", "--run-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli.main(["train", "--backend", "numpyy"])


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
    args = ["train", "--dataset", "digits", "--loss", "nllr", "--epochs", "2", "--batch-size", "32",
            "--lr", "0.02", "--limit", "96", "--recipe", "cosine", "--verbose", "0",
            "--run-dir", str(run_dir)]
    assert cli.main(args) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["recipe"]["schedule"] == "cosine" and config["recipe"]["batch_size"] == 32
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
        [sys.executable, "-m", "keras_crl.cli", "train", "--backend", other, "--epochs", "1",
         "--limit", "64", "--verbose", "0", "--run-dir", str(run_dir)],
        check=True, env=env, capture_output=True, timeout=300,
    )
    assert json.loads((run_dir / "metrics.json").read_text())["backend"] == other
