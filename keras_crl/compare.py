"""The same training on TensorFlow, PyTorch and JAX, side by side.

Each backend trains in its own process (`keras-crl train --backend B`), from
the same seeded NumPy initialisation on the same batches; this module then
reads the run folders and writes a table and one overlay plot.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from keras_crl.train import plot_curves
from keras_crl.train import read_log

BACKENDS = ("tensorflow", "torch", "jax")


def compare_backends(train_args, out_dir, backends=BACKENDS, echo=print):
    """Runs `keras-crl train` once per backend and compares the runs.

    Args:
        train_args: Arguments of `keras-crl train` (without `--backend` and
            `--run-dir`).
        out_dir: Output folder; each backend's run goes to `out_dir/<backend>`.
        backends: The backends to run, the first being the reference.
        echo: Where progress lines go.

    Returns:
        One dict per backend: final loss, test accuracy, time per epoch,
        images per second, the largest difference of the trained weights to
        the first backend's (relative to each weight's scale) and of the
        per-epoch training losses. Also written to `out_dir/comparison.{json,md}`, with the
        curves overlaid in `out_dir/loss.png` and `out_dir/accuracy.png`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for backend in backends:
        echo(f"training on {backend} ...")
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        command = [sys.executable, "-m", "keras_crl.cli", "train", *train_args,
                   "--backend", backend, "--run-dir", str(out_dir / backend), "--verbose", "0"]
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"training on {backend} failed:\n{result.stderr[-3000:]}")

    reference = read_weights(out_dir / backends[0] / "last.weights.h5")
    rows, logs = [], {}
    for backend in backends:
        run = out_dir / backend
        metrics = json.loads((run / "metrics.json").read_text())
        logs[backend] = read_log(run / "log.csv")
        weights = read_weights(run / "last.weights.h5")
        rows.append({
            "backend": backend,
            "final_train_loss": metrics["final_train_loss"],
            "test_accuracy": metrics["test_accuracy"],
            "seconds_per_epoch": metrics["seconds_per_epoch"],
            "images_per_second": metrics["images_per_second"],
            "max_weight_diff": max_difference(reference, weights),
            "max_loss_diff": float(np.abs(logs[backend]["loss"] - logs[backends[0]]["loss"]).max()),
        })
    (out_dir / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / "comparison.md").write_text(format_table(rows) + "\n")
    plot_curves(None, out_dir, runs=logs)
    return rows


def read_weights(path):
    """Every array in a `.weights.h5` file, by its path in the file.

    Read with h5py directly, so no backend is involved.
    """
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, item: arrays.__setitem__(name, item[()])
            if isinstance(item, h5py.Dataset) else None
        )
    return arrays


def max_difference(reference, other):
    """Largest difference over the model's weights, relative to each weight's scale.

    Optimizer slots (momentum buffers) are left out: they are sums of
    gradients, not the model.
    """
    if reference.keys() != other.keys():
        raise ValueError("The weight files hold different variables.")
    return float(max(
        np.abs(reference[k] - other[k]).max() / max(np.abs(reference[k]).max(), 1e-12)
        for k in reference if not k.startswith("optimizer")
    ))


def format_table(rows):
    """A markdown table of `compare_backends` rows."""
    lines = [
        "| backend | final train loss | test accuracy | s / epoch | images / s "
        "| max weight diff (relative) | max epoch-loss diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['final_train_loss']:.6f} | {100 * r['test_accuracy']:.2f} % "
            f"| {r['seconds_per_epoch']:.3f} | {r['images_per_second']:.0f} "
            f"| {r['max_weight_diff']:.2e} | {r['max_loss_diff']:.2e} |"
        )
    return "\n".join(lines)
