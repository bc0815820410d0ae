"""The files of a run folder: how each is written and read.

    config.json, metrics.json   write_json (atomic)
    log.csv                     read_log, truncate_log (Keras' CSVLogger writes it)
    state.npz                   save_state / load_state / load_metric_state:
                                the resumable checkpoint (state-*.npz: older kept ones)
    *.weights.h5                read_weights (without a backend)
    loss.png, accuracy.png      plot_curves
    .lock                       run_lock, is_locked: one training process at a time

Checkpoints are plain NumPy arrays (no pickle), so a run resumes on any
backend.
"""

import contextlib
import json
import os
import re
import warnings
import zipfile
from pathlib import Path

import keras
import numpy as np

from keras_crl._optional import MissingOptionalDependency
from keras_crl._optional import optional_import

# What `train` writes into a run folder (a study adds files of its own).
RUN_FILES = (
    "config.json",
    "metrics.json",
    "log.csv",
    "state.npz",
    "state-*-*.npz",
    "best.weights.h5",
    "last.weights.h5",
    "loss.png",
    "accuracy.png",
)


def clear(run_dir):
    """Removes a former run's files from `run_dir`, so a fresh run mixes with none.

    Files that `train` does not write stay.
    """
    for pattern in RUN_FILES:
        for path in Path(run_dir).glob(pattern):
            path.unlink()


def finished(run_dir, epochs):
    """Whether `run_dir` holds a run that has trained all its `epochs` and been evaluated."""
    state, metrics = Path(run_dir) / "state.npz", Path(run_dir) / "metrics.json"
    return state.exists() and metrics.exists() and state_position(state) == (epochs, 0)


def write_json(path, obj):
    """Writes `obj` as JSON to `path` atomically (a temporary file, renamed)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def save_state(model, epoch, path, step=0, keep=1, replicas=None):
    """Writes the training state to `path` atomically, keeping the last `keep`.

    The state is everything a run needs to continue exactly: the weights,
    the optimizer variables (their step count is the schedule's position),
    the position `(epoch, step)` (the next step to train: step `step` of
    epoch `epoch`) and, inside an epoch, the metric variables (the running
    loss mean and accuracy totals of the epoch so far).

    Args:
        model: The compiled model `fit` trains.
        epoch: The epoch to resume at.
        path: The checkpoint, e.g. `run_dir / "state.npz"`.
        step: Steps of `epoch` already trained (0: at its start).
        keep: Checkpoints to keep: `path` (the newest) and up to `keep - 1`
            older ones beside it, named `state-EEEE-SSSSSS.npz` by position.
        replicas: Per process (torch DDP), a list of (non-trainable weights,
            metric variables) as arrays, in rank order: each process's own
            batch-norm statistics and metric totals differ inside an epoch.
    """
    path = Path(path)
    arrays = {"epoch": np.asarray(epoch), "step": np.asarray(step)}
    for i, v in enumerate(model.weights):
        arrays[f"w{i}"] = keras.ops.convert_to_numpy(v)
    for i, v in enumerate(model.optimizer.variables):
        arrays[f"o{i}"] = keras.ops.convert_to_numpy(v)
    if step:
        for i, v in enumerate(model.metrics_variables):
            arrays[f"m{i}"] = keras.ops.convert_to_numpy(v)
    for rank, (non_trainable, metrics) in enumerate(replicas or []):
        for i, value in enumerate(non_trainable):
            arrays[f"r{rank}_n{i}"] = value
        for i, value in enumerate(metrics if step else ()):
            arrays[f"r{rank}_m{i}"] = value
    tmp = Path(f"{path}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    if keep > 1 and path.exists():
        # The newest checkpoint gets a second name by its position before
        # `path` moves on, so `path` is complete at every moment.
        kept = path.with_name("state-{:04d}-{:06d}.npz".format(*state_position(path)))
        if not kept.exists():
            os.link(path, kept)
    # A kill before this line leaves the previous state intact.
    os.replace(tmp, path)
    for old in sorted(path.parent.glob("state-*-*.npz"))[: -(keep - 1) or None]:
        old.unlink()


def state_position(path):
    """`(epoch, step)` a `state.npz` resumes at, or a `ValueError` naming the file.

    Checkpoints from before mid-epoch saves hold no step: `(epoch, 0)`.
    """
    with _open_state(path) as state:
        step = int(state["step"]) if "step" in state.files else 0
        return int(state["epoch"]), step


def _open_state(path):
    # np.load leaves its own file handle open when the archive is corrupt:
    # zipfile's check opens and closes it.
    if Path(path).is_file() and not zipfile.is_zipfile(path):
        raise ValueError(f"Cannot read the checkpoint {path}: not a complete .npz archive")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"Cannot read the checkpoint {path}: {error}") from error


def _count(state, prefix):
    return sum(re.fullmatch(rf"{prefix}\d+", k) is not None for k in state.files)


def load_state(model, path, rank=0):
    """Restores the weights and optimizer variables `save_state` wrote.

    Args:
        model: The compiled model `fit` will train.
        path: The checkpoint.
        rank: This process's rank: its own non-trainable weights, when the
            checkpoint holds each process's.

    Returns:
        The epoch to resume at.
    """
    with _open_state(path) as state:
        weights = model.weights
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        opt_vars = model.optimizer.variables
        n_w, n_o = _count(state, "w"), _count(state, "o")
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
        if f"r{rank}_n0" in state.files:
            for i, v in enumerate(model.non_trainable_weights):
                v.assign(state[f"r{rank}_n{i}"])
        return int(state["epoch"])


def load_metric_state(model, path, rank=0):
    """Restores the metric variables of an epoch a checkpoint interrupted.

    Call it once the metrics are built and reset for the epoch (in
    `on_epoch_begin`), so the epoch's logged loss and accuracy average over
    the steps before the checkpoint too. A no-op for an end-of-epoch one.
    """
    with _open_state(path) as state:
        prefix = f"r{rank}_m" if f"r{rank}_m0" in state.files else "m"
        variables = model.metrics_variables
        if _count(state, prefix) not in (0, len(variables)):
            raise ValueError(
                f"{path} holds {_count(state, prefix)} metric variables; the model "
                f"has {len(variables)}. Was it written with other metrics?"
            )
        if f"{prefix}0" in state.files:
            for i, v in enumerate(variables):
                v.assign(state[f"{prefix}{i}"])


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
    """`log.csv` as a dict of column -> NumPy array.

    Keras' CSVLogger writes `val_*` columns of "NA" when a run has no validation
    split; such columns are left out, a single "NA" in a column reads as NaN.
    """
    path = Path(path)
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:] if not line.startswith("epoch")]
    columns = {name: [r[i] for r in rows] for i, name in enumerate(header)}
    return {
        name: np.array([np.nan if v == "NA" else float(v) for v in values])
        for name, values in columns.items()
        if any(v != "NA" for v in values)
    }


def plot_curves(log, run_dir, runs=None):
    """Writes `loss.png` and `accuracy.png`: train and validation curves.

    The plots are an extra: without matplotlib (not in the core install)
    they are skipped with one warning naming the extra, so `train()` and
    `compare` never need it.

    Args:
        log: `read_log` output of one run, or None when `runs` is given.
        run_dir: Output folder.
        runs: Optional mapping label -> log to overlay several runs.
    """
    try:
        matplotlib = optional_import("matplotlib", "study", "plotting the loss and accuracy")
    except MissingOptionalDependency as missing:
        warnings.warn(f"{missing}; no loss.png or accuracy.png written", stacklevel=2)
        return
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


__all__ = [
    "load_metric_state",
    "load_state",
    "is_locked",
    "load_weights",
    "plot_curves",
    "read_log",
    "read_weights",
    "run_lock",
    "save_state",
    "state_position",
    "truncate_log",
    "write_json",
]


@contextlib.contextmanager
def run_lock(run_dir, echo=None):
    """Holds `run_dir/.lock` (an exclusive `flock`) while the block runs.

    One process trains a run folder at a time: a retried study run waits
    here for an earlier attempt that is still alive instead of writing the
    same files beside it. The kernel drops the lock when its holder dies, so
    a killed process never leaves the folder locked.

    Args:
        run_dir: The run folder (made if missing).
        echo: Told once, if the lock is held by another process, that this
            one waits.

    Example:

    ```python
    with run_lock("runs/study/runs/jax/ce/seed0"):
        ...  # train into it
    ```
    """
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if echo:
                echo(f"{run_dir}: another process trains it; waiting for it to end", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(run_dir):
    """Whether a process holds `run_lock(run_dir)` now (a run is training there)."""
    import fcntl

    path = Path(run_dir) / ".lock"
    if not path.exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
