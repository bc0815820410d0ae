"""Every example runs, on tiny settings, on the current backend."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args, cwd):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        cwd=cwd,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", cwd=tmp_path)
    accuracy = float(out.strip().splitlines()[-1].split(":")[1])
    assert accuracy > 0.8


def test_cifar_paper_recipe_smoke(tmp_path):
    out = run_example(
        "cifar_paper_recipe.py",
        "--dataset",
        "synthetic",
        "--model",
        "small_cnn",
        "--epochs",
        "1",
        "--limit",
        "64",
        "--run-dir",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert "top-1 test accuracy" in out
    assert (tmp_path / "run" / "metrics.json").exists()


def test_finetune_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, size=(40, 36, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / label / f"{i}.png")
    out = run_example(
        "finetune_image_folder.py",
        str(tmp_path / "data"),
        "--model",
        "keras_app_mobilenet_v2",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--run-dir",
        str(tmp_path / "run"),
        cwd=tmp_path,
    )
    assert "fine-tuned" in out
    assert (tmp_path / "run" / "full" / "metrics.json").exists()


def test_keras_cv_backbone(tmp_path):
    out = run_example("keras_cv_backbone.py", "--epochs", "1", "--samples", "200", cwd=tmp_path)
    assert 0.0 <= float(out.strip().splitlines()[-1].split(":")[1]) <= 1.0


def test_keras_hub_backbone(monkeypatch, capsys):
    # Run in this process: keras-hub (and the TensorFlow it imports) is
    # imported once for the suite, not again in a child process.
    args = ["--epochs", "2", "--samples", "320"]
    monkeypatch.setattr(sys, "argv", ["keras_hub_backbone.py", *args])
    runpy.run_path(str(ROOT / "examples" / "keras_hub_backbone.py"), run_name="__main__")
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].endswith("with competing_ratio_loss")
    # Ten classes, chance 0.1: the second epoch fits its images (its batch
    # norm statistics, 20 steps old, are too fresh for a test number).
    last_epoch = out[-2].split("accuracy: ")[1].split()[0]
    assert float(last_epoch) > 0.6
    assert 0.0 <= float(out[-1].split(":")[1]) <= 1.0
