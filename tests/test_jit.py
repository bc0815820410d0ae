"""`--jit on` means a compiled step, or the command refuses (issue 21).

TensorFlow: XLA, with op determinism off (under it Keras runs no XLA and
says so only in a warning), proven by XLA's own dump of the train step;
JAX: XLA; torch: refused (see `TrainConfig`). Each test is for the backend
of its pytest process.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_crl import cli
from keras_crl import data as data_lib
from keras_crl.config import TrainConfig
from keras_crl.config import check_jit
from keras_crl.reproducible import make_deterministic
from keras_crl.reproducible import op_determinism
from keras_crl.reproducible import set_op_determinism
from keras_crl.train import train
from tests.backend_utils import BACKEND
from tests.backend_utils import HAS_XLA
from tests.cross_backend.test_consistency import LOSS_ATOL
from tests.cross_backend.test_consistency import WEIGHT_RTOL
from tests.cross_backend.test_consistency import assert_same_training
from tests.cross_backend.worker import short_training

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--epochs", "1", "--limit", "64", "--batch-size", "32", "--verbose", "0"]
only = {b: pytest.mark.skipif(BACKEND != b, reason=f"{b} only") for b in ("tensorflow", "torch")}


def one_line_error(capsys, command):
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"keras-crl {command}: error: "), err
    return err


@only["tensorflow"]
def test_jit_on_under_determinism_is_refused_on_tensorflow(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--backend", "tensorflow", "--jit", "on", *SMALL, "--run-dir", str(run_dir)]
    assert cli.main(args) == 2
    err = one_line_error(capsys, "train")
    assert "--jit on" in err and "--no-deterministic" in err, err
    assert not run_dir.exists()
    # --jit on with mixed precision too: the flags, not the policy, decide.
    assert cli.main([*args, "--precision", "mixed_bfloat16"]) == 2
    assert "--no-deterministic" in one_line_error(capsys, "train")


@only["tensorflow"]
def test_jit_on_runs_xla_on_tensorflow(tmp_path):
    # XLA writes every module it compiles here: the train step must be one.
    dump = tmp_path / "xla"
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        KERAS_BACKEND="tensorflow",
        TF_CPP_MIN_LOG_LEVEL="3",
        XLA_FLAGS=f"--xla_dump_to={dump}",
    )
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "keras_crl.cli", "train", "--backend", "tensorflow"]
    command += ["--jit", "on", "--no-deterministic", *SMALL, "--run-dir", str(run_dir)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "doesn't support `jit_compile=True`" not in proc.stderr
    # Keras' train (and test) step is the function `one_step_on_data`.
    steps = [p.name for p in dump.iterdir() if "inference_one_step_on_data" in p.name]
    assert steps, sorted(p.name for p in dump.iterdir())[:20]
    ran = {"jit": True, "deterministic": False}
    assert json.loads((run_dir / "config.json").read_text())["ran"] == ran
    assert json.loads((run_dir / "metrics.json").read_text())["ran"] == ran


@only["tensorflow"]
def test_a_process_that_ran_deterministic_can_run_xla(tmp_path):
    # TensorFlow's op determinism is process-wide; the XLA run turns it off.
    base = dict(model="small_cnn", dataset="digits", epochs=1, limit=64, batch_size=32, verbose=0)
    first = train(TrainConfig(**base, run_dir=str(tmp_path / "a")))
    assert first["ran"] == {"jit": False, "deterministic": True}
    second = train(TrainConfig(**base, jit=True, deterministic=False, run_dir=str(tmp_path / "b")))
    assert second["ran"] == {"jit": True, "deterministic": False}
    make_deterministic(0)


@only["torch"]
def test_jit_on_is_refused_on_torch(tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", "--backend", "torch", "--jit", "on", *SMALL, "--run-dir", str(run_dir)]
    for extra in ([], ["--no-deterministic"]):
        assert cli.main([*args, *extra]) == 2
        err = one_line_error(capsys, "train")
        assert "--jit on" in err and "torch.compile" in err and "loss.backward()" in err, err
    assert not run_dir.exists()


@pytest.mark.skipif(BACKEND != "jax", reason="jax only")
def test_jit_on_runs_xla_on_jax_deterministically(tmp_path):
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--jit", "on", *SMALL, "--run-dir", str(run_dir)]) == 0
    ran = {"jit": True, "deterministic": True}  # XLA on a CPU is deterministic
    assert json.loads((run_dir / "config.json").read_text())["ran"] == ran


@pytest.mark.once_per_suite
def test_the_jit_rule():
    for backend in ("tensorflow", "torch", "jax"):
        for deterministic in (True, False):
            for jit in ("auto", False):
                check_jit(jit, deterministic, backend)  # Keras' choice, or no XLA: fine
    check_jit(True, True, "jax")
    check_jit(True, False, "jax")
    check_jit(True, False, "tensorflow")
    with pytest.raises(ValueError, match=r"jit=True: needs .*\(--no-deterministic\) on TensorFlow"):
        check_jit(True, True, "tensorflow")
    for deterministic in (True, False):
        with pytest.raises(ValueError, match=r"jit=True: is refused on torch: torch.compile"):
            check_jit(True, deterministic, "torch")


@pytest.mark.once_per_suite
def test_every_backend_is_checked_before_any_trains(tmp_path, capsys):
    out = tmp_path / "out"
    command = ["compare-backends", "--jit", "on", "--backends", "jax,torch", "--out-dir", str(out)]
    assert cli.main(command) == 2
    assert "torch.compile" in one_line_error(capsys, "compare-backends")
    assert not out.exists()
    command = ["study", "--jit", "on", "--backends", "tensorflow", "--out-dir", str(out)]
    assert cli.main(command) == 2
    assert "--no-deterministic" in one_line_error(capsys, "study")


def test_op_determinism_turns_off_and_on_again():
    make_deterministic(0)
    assert op_determinism()
    try:
        make_deterministic(0, ops=False)
        # XLA on a CPU is deterministic whatever the switch.
        assert op_determinism() is (BACKEND == "jax")
    finally:
        set_op_determinism(True)
    assert op_determinism()


@pytest.mark.skipif(not HAS_XLA, reason="XLA compilation exists on TensorFlow and JAX only")
def test_eager_and_xla_training_agree():
    # The README's claim, at its tolerances: 20 SGD steps of the batch-norm
    # CNN, not compiled (a TensorFlow graph, JAX op by op) and with XLA, agree
    # to LOSS_ATOL in the loss and WEIGHT_RTOL of each weight's scale.
    ds = data_lib.load_dataset("digits", seed=0)
    runs = {}
    for jit in (False, True):
        out = {}
        short_training(out, ds, None, jit=jit, recipe="sgd")
        assert bool(out[f"train/sgd/jit={jit}/compiled"]) is jit
        runs[jit] = {k.replace("jit=True", "jit=False"): v for k, v in out.items()}
    make_deterministic(0)
    assert (LOSS_ATOL, WEIGHT_RTOL) == (5e-7, 3e-6)
    assert_same_training(runs[False], runs[True], "train/sgd/jit=False", f"{BACKEND} XLA")
    assert np.isfinite(runs[True]["train/sgd/jit=False/losses"]).all()
