"""The files of a run folder: how each is written and read.

    config.json, metrics.json   write_json (atomic)
    log.csv                     read_log, truncate_log (Keras' CSVLogger writes it)
    state.npz                   save_state / load_state: the resumable checkpoint
    *.weights.h5                read_weights (without a backend)
    loss.png, accuracy.png      plot_curves

Checkpoints are plain NumPy arrays (no pickle), so a run resumes on any
backend.
"""

import json
import os
import zipfile
from pathlib import Path

import keras
import numpy as np


def write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically (a temporary file, renamed)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def save_state(model, epoch, path):
    """Writes weights, optimizer variables and `epoch` to `path` atomically."""
    arrays = {"epoch": np.asarray(epoch)}
    for i, v in enumerate(model.weights):
        arrays[f"w{i}"] = keras.ops.convert_to_numpy(v)
    for i, v in enumerate(model.optimizer.variables):
        arrays[f"o{i}"] = keras.ops.convert_to_numpy(v)
    tmp = Path(f"{path}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    # A kill before this line leaves the previous state intact.
    os.replace(tmp, path)


def state_epoch(path):
    """The epoch a `state.npz` resumes at, or a `ValueError` naming the file."""
    with _open_state(path) as state:
        return int(state["epoch"])


def _open_state(path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot read the checkpoint {path}: {error}") from error


def load_state(model, path):
    """Restores what `save_state` wrote; returns the epoch."""
    with _open_state(path) as state:
        weights = model.weights
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        opt_vars = model.optimizer.variables
        n_w = sum(k.startswith("w") for k in state.files)
        n_o = sum(k.startswith("o") for k in state.files)
        if (n_w, n_o) != (len(weights), len(opt_vars)):
            raise ValueError(
                f"{path} holds {n_w} weights and {n_o} optimizer variables; the "
                f"model has {len(weights)} and {len(opt_vars)}. Was it written by "
                "another model or optimizer?"
            )
        for i, v in enumerate(weights):
            v.assign(state[f"w{i}"])
        for i, v in enumerate(opt_vars):
            v.assign(state[f"o{i}"])
        return int(state["epoch"])


def truncate_log(path, epochs):
    """Drops log rows of epochs after the checkpoint (a kill between the
    CSV row and the checkpoint would otherwise log that epoch twice)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [
        line for line in lines[1:] if line.strip() and int(float(line.split(",")[0])) < epochs
    ]
    tmp = Path(f"{path}.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def load_weights(model, path):
    """`model.load_weights(path)`, failing with a message that names the file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"The weights file {path} does not exist.")
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"Cannot load the weights file {path}: {error}") from error


def read_weights(path):
    """Every array in a `.weights.h5` file, by its path in the file.

    Read with h5py directly, so no backend is involved.
    """
    import h5py

    arrays = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


def read_log(path):
    """`log.csv` as a dict of column -> NumPy array."""
    path = Path(path)
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:] if not line.startswith("epoch")]
    return {name: np.array([float(r[i]) for r in rows]) for i, name in enumerate(header)}


def plot_curves(log, run_dir, runs=None):
    """Writes `loss.png` and `accuracy.png`: train and validation curves.

    Args:
        log: `read_log` output of one run, or None when `runs` is given.
        run_dir: Output folder.
        runs: Optional mapping label -> log to overlay several runs.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    runs = runs or {"": log}
    for metric in ("loss", "accuracy"):
        fig, ax = plt.subplots(figsize=(6, 4))
        drawn = False
        for label, curves in runs.items():
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                if key in curves:
                    name = f"{label} {key}".strip()
                    ax.plot(curves["epoch"] + 1, curves[key], style, label=name)
                    drawn = True
        if drawn:
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            ax.legend()
            ax.grid(alpha=0.3)
            fig.tight_layout()
            fig.savefig(Path(run_dir) / f"{metric}.png", dpi=100)
        plt.close(fig)
