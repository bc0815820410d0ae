"""The command line keeps its word: every flag does what it says or refuses.

Each test here is a row of what a new user ran (issue 21): a flag that does
not apply, a number out of range, a resume with other settings. They go
through `keras_crl.cli.main`, the entry point, and run once per suite (the
checks do not depend on the backend; the tiny trainings run on JAX).
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_crl import cli

pytestmark = pytest.mark.once_per_suite
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--epochs", "1", "--limit", "64", "--batch-size", "32", "--verbose", "0"]


def run(capsys, *args):
    """`keras-crl ARGS` in this process: (exit status, stdout, stderr), no traceback."""
    status = cli.main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err + out, err
    return status, out, err


def refused(capsys, pattern, *args):
    """`keras-crl ARGS` ends with one line matching `pattern`, exit 2."""
    status, _, err = run(capsys, *args)
    assert status == 2, (args, err)
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(pattern, err), (pattern, err)
    return err


@pytest.mark.parametrize(
    "loss",
    [
        "focal",
        "focal:gamma=1",
        "keras.losses:CategoricalFocalCrossentropy:gamma=2.0:one_hot=True",
        "ce:label_smoothing=0.1",
    ],
)
def test_every_documented_loss_form_trains(tmp_path, capsys, loss):
    status, _, _ = run(capsys, "train", "--loss", loss, *TINY, "--run-dir", str(tmp_path / "r"))
    assert status == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert config["loss"] == loss.split(":")[0] if "keras.losses" not in loss else True
    if loss == "focal:gamma=1":
        assert config["loss_options"] == {"gamma": 1}
    if loss.startswith("ce:"):
        assert config["label_smoothing"] == 0.1


def test_an_unknown_user_loss_is_one_line(tmp_path, capsys):
    refused(capsys, "Cannot import the loss 'nosuchpkg.mod:Thing'", "train", "--loss",
            "nosuchpkg.mod:Thing", "--run-dir", str(tmp_path / "r"))  # fmt: skip
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "flags, pattern",
    [
        (["--epochs", "0"], r"--epochs 0: must be an integer of at least 1"),
        (["--epochs", "-1"], r"--epochs -1: must be an integer of at least 1"),
        (["--limit", "-5"], r"--limit -5: must be an integer of at least 1"),
        (["--limit", "0"], r"--limit 0: must be an integer"),
        (["--lr", "-1"], r"--lr -1.0: must be a number in \[0, inf\)"),
        (["--momentum", "1.5"], r"--momentum 1.5: must be a number in \[0, 1\)"),
        (["--weight-decay", "-0.1"], r"--weight-decay -0.1: must be"),
        (["--batch-size", "0"], r"--batch-size 0: must be"),
        (["--validation-split", "1"], r"--validation-split 1.0: must be"),
        (["--label-smoothing", "1"], r"--label-smoothing 1.0: must be"),
        (["--seed", "-3"], r"--seed -3: must be"),
        (["--devices", "0"], r"--devices 0: must be"),
        (["--loss", "ce", "--beta", "-1"], r"--beta -1.0: ce is CRL with alpha 0 and beta 0"),
        (["--loss", "nllr", "--alpha", "0.7"], r"--alpha 0.7: nllr is CRL with alpha 0 and beta 1"),
        (["--loss", "focal", "--alpha", "1"], r"--alpha 1.0: applies to the CRL family"),
        (["--alpha", "-1"], r"--alpha -1.0: CRL needs a finite number"),
        (["--image-size", "32"], r"--image-size 32: does not apply to dataset digits"),
        (["--image-size", "0", "--dataset", "synthetic"], r"--image-size 0: must be a positive"),
        (["--data-workers", "2"], r"--data-workers 2: does not apply to dataset digits"),
        (["--model", "nosuch"], r"--model nosuch: unknown model. Valid models:"),
    ],
)
def test_out_of_range_or_inapplicable_flags_refuse_before_any_work(
    tmp_path, capsys, flags, pattern
):
    for command, out in (("train", "--run-dir"), ("compare-backends", "--out-dir")):
        refused(capsys, pattern, command, *flags, out, str(tmp_path / command))
        assert not (tmp_path / command).exists(), "refused, yet a folder was made"


@pytest.mark.parametrize(
    "flags, pattern",
    [
        (["--epochs", "0"], r"--epochs 0: must be an integer"),
        (["--limit", "0"], r"--limit 0: must be"),
        (["--lr", "-1"], r"--lr -1.0: must be"),
        (["--image-size", "32"], r"--image-size 32: does not apply to dataset digits"),
    ],
)
def test_study_refuses_the_same_flags(tmp_path, capsys, flags, pattern):
    refused(capsys, pattern, "study", *flags, "--out-dir", str(tmp_path / "s"))
    assert not (tmp_path / "s").exists()


def test_the_python_api_keeps_its_defaults():
    from keras_crl.config import TrainConfig
    from keras_crl.config import check_config
    from keras_crl.config import loss_parameters

    for loss, expected in (("ce", (0.0, 0.0)), ("nllr", (0.0, 1.0)), ("crl", (0.0, 0.25))):
        check_config(TrainConfig(loss=loss))
        assert loss_parameters(TrainConfig(loss=loss)) == expected
    # The study's NLLR and CE state their fixed alpha and beta.
    check_config(TrainConfig(loss="nllr", alpha=0.0, beta=1.0))
    check_config(TrainConfig(loss="ce", alpha=0.0, beta=0.0))


def test_compare_backends_reports_a_workers_mistake_as_one_line(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    refused(capsys, r"^keras-crl compare-backends: error: jax: .*nonexistent", "compare-backends",
            "--dataset", "folder", "--data-dir", str(missing), "--backends", "jax",
            "--out-dir", str(tmp_path / "c"))  # fmt: skip


def test_bad_init_weights_leave_no_run_folder(tmp_path, capsys):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not an HDF5 file")
    refused(capsys, "bad.weights.h5", "train", "--init-weights", str(bad), *TINY,
            "--run-dir", str(tmp_path / "run"))  # fmt: skip
    assert not (tmp_path / "run").exists()


def train_once(tmp_path, capsys, *flags):
    run_dir = tmp_path / "run"
    status, _, _ = run(capsys, "train", *TINY, "--run-dir", str(run_dir), *flags)
    assert status == 0
    return run_dir


def test_resume_refuses_other_training_settings(tmp_path, capsys):
    run_dir = train_once(tmp_path, capsys, "--batch-size", "16")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    err = refused(capsys, r"other settings \(.*loss 'crl' in the run, 'ce' asked",
                  "train", "--resume", "--run-dir", str(run_dir), "--loss", "ce",
                  "--epochs", "2")  # fmt: skip
    refused(capsys, r"recipe.batch_size 16 in the run, 256 asked", "train", "--resume",
            "--run-dir", str(run_dir), "--batch-size", "256", "--epochs", "2")  # fmt: skip
    refused(capsys, r"seed 0 in the run, 3 asked", "train", "--resume", "--run-dir",
            str(run_dir), "--seed", "3", "--epochs", "2")  # fmt: skip
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after == before, f"a refused resume changed the run folder ({err})"


def test_resume_with_more_epochs_keeps_the_settings_and_records_the_change(tmp_path, capsys):
    run_dir = train_once(tmp_path, capsys, "--batch-size", "16", "--loss", "nllr")
    status, _, _ = run(capsys, "train", "--resume", "--run-dir", str(run_dir), "--epochs", "2",
                       "--verbose", "0")  # fmt: skip
    assert status == 0
    described = json.loads((run_dir / "config.json").read_text())
    assert described["config"]["loss"] == "nllr" and described["recipe"]["batch_size"] == 16
    assert described["recipe"]["epochs"] == 2
    # The step schedule keeps the milestones the first epoch trained with.
    assert described["milestones_used"] == [1, 1]
    (resumed,) = described["resumes"]
    assert resumed["changed"] == {"epochs": [1, 2]} and resumed["epoch"] == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["loss"] == "nllr" and (metrics["alpha"], metrics["beta"]) == (0.0, 1.0)
    assert metrics["trained_on"] == ["jax"]


def test_resume_refuses_fewer_epochs_and_a_longer_cosine(tmp_path, capsys):
    run_dir = train_once(tmp_path, capsys, "--epochs", "2")
    refused(capsys, r"--epochs 1: the run has already trained 2 epochs", "train", "--resume",
            "--run-dir", str(run_dir), "--epochs", "1")  # fmt: skip
    cosine = tmp_path / "cosine"
    assert run(capsys, "train", *TINY, "--schedule", "cosine", "--run-dir", str(cosine))[0] == 0
    refused(capsys, r"--epochs 3: the run's cosine schedule anneals over its 1 epochs", "train",
            "--resume", "--run-dir", str(cosine), "--epochs", "3")  # fmt: skip


def test_resume_without_a_checkpoint_starts_fresh_with_a_notice(tmp_path, capsys):
    run_dir = tmp_path / "DOES_NOT_EXIST"
    status, _, err = run(capsys, "train", "--resume", "--run-dir", str(run_dir), *TINY)
    assert status == 0 and (run_dir / "metrics.json").exists()
    assert "has no checkpoint (state.npz); starting a fresh run" in err


def test_a_finished_run_resumed_on_another_backend_trains_nothing(tmp_path, capsys):
    run_dir = train_once(tmp_path, capsys)
    before = (run_dir / "metrics.json").read_bytes()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_crl.cli",
            "train",
            "--resume",
            "--backend",
            "torch",
            "--run-dir",
            str(run_dir),
            "--verbose",
            "0",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "has trained all its epochs; nothing to train" in proc.stderr
    assert (run_dir / "metrics.json").read_bytes() == before
    assert json.loads(before)["backend"] == "jax"


def test_a_fresh_run_clears_a_former_runs_files(tmp_path, capsys):
    run_dir = train_once(tmp_path, capsys, "--loss", "ce")
    assert (run_dir / "best.weights.h5").exists()
    # Without a validation split the new run writes no best weights, so only clearing
    # removes the former run's: left behind, they would be evaluated as this run's.
    args = ("--run-dir", str(run_dir), "--epochs", "1", "--validation-split", "0")
    assert run(capsys, "train", *TINY, *args)[0] == 0
    assert not (run_dir / "best.weights.h5").exists()
    assert json.loads((run_dir / "config.json").read_text())["config"]["loss"] == "crl"
