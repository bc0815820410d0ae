"""The same training on TensorFlow, PyTorch and JAX, side by side.

Each backend trains in its own process (`python -m keras_crl.train`), from
the same seeded NumPy initialisation on the same batches; this module then
reads the run folders and writes a table and one overlay plot.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from keras_crl import backends as backends_lib
from keras_crl.run_folder import plot_curves
from keras_crl.run_folder import read_log
from keras_crl.run_folder import read_weights


def compare_backends(config, out_dir, backends=backends_lib.BACKENDS, echo=print):
    """Trains `config` once per backend, each in its own process, and compares.

    Args:
        config: A `keras_crl.train.TrainConfig`; its `run_dir` is replaced by
            `out_dir/<backend>`.
        out_dir: Output folder.
        backends: The backends to run, the first being the reference.
        echo: Where progress lines go.

    Raises:
        ValueError: `config` fails `keras_crl.config.check_config`, or a
            backend's run stopped on a user's mistake (a missing data set, a
            bad file), with that run's one-line message.

    Returns:
        One dict per backend: final loss, test accuracy, time per epoch,
        images per second, the largest difference of the trained weights to
        the first backend's (relative to each weight's scale) and of the
        per-epoch training losses. Also written to `out_dir/comparison.{json,md}`, with the
        curves overlaid in `out_dir/loss.png` and `out_dir/accuracy.png`.
    """
    from keras_crl.config import check_config

    check_config(config, backends)  # before any backend trains
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for backend in backends:
        echo(f"training on {backend} ...")
        run = dataclasses.replace(config, run_dir=str(out_dir / backend), verbose=0)
        config_path = out_dir / f"{backend}.train.json"
        config_path.write_text(json.dumps(dataclasses.asdict(run), indent=2) + "\n")
        backends_lib.run(backend, "keras_crl.train", [config_path])

    reference = read_weights(out_dir / backends[0] / "last.weights.h5")
    rows, logs = [], {}
    for backend in backends:
        run = out_dir / backend
        metrics = json.loads((run / "metrics.json").read_text())
        logs[backend] = read_log(run / "log.csv")
        weights = read_weights(run / "last.weights.h5")
        rows.append(
            {
                "backend": backend,
                "final_train_loss": metrics["final_train_loss"],
                "test_accuracy": metrics["test_accuracy"],
                "seconds_per_epoch": metrics["seconds_per_epoch"],
                "images_per_second": metrics["images_per_second"],
                "max_weight_diff": max_difference(reference, weights),
                "max_loss_diff": float(
                    np.abs(logs[backend]["loss"] - logs[backends[0]]["loss"]).max()
                ),
            }
        )
    (out_dir / "comparison.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / "comparison.md").write_text(format_table(rows) + "\n")
    plot_curves(None, out_dir, runs=logs)
    return rows


def max_difference(reference, other):
    """Largest difference over the model's weights, relative to each weight's scale.

    Optimizer slots (momentum buffers) are left out: they are sums of
    gradients, not the model.
    """
    if reference.keys() != other.keys():
        raise ValueError("The weight files hold different variables.")
    return float(
        max(
            np.abs(reference[k] - other[k]).max() / max(np.abs(reference[k]).max(), 1e-12)
            for k in reference
            if not k.startswith("optimizer")
        )
    )


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


__all__ = [
    "compare_backends",
    "format_table",
    "max_difference",
]
