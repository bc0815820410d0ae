"""Cross-validation folds: one run per test fold, and their mean ± std.

A data set published as folds (`config.DATASET_FOLDS`: Adience's five) is
evaluated by training once per fold: fold k is the test split, the other
folds train (their validation part comes from them too; the loader keeps the
test fold out). `train_folds` trains every fold of a `TrainConfig` into
`RUN/fold-<k>` and writes `RUN/folds.json`: each fold's exact and one-off
test accuracy and their mean and sample std (ddof=1) over the folds.
`keras-crl train --folds all` runs it; `keras-crl study --folds all` trains
each loss and seed per fold with `fold_config`.
"""

import dataclasses
import json
from pathlib import Path

import numpy as np

from keras_crl import parallel
from keras_crl import run_folder
from keras_crl.config import DATASET_FOLDS

# metrics.json keys summarized over folds, where the data set reports them.
MEASURES = ("test_accuracy", "test_one_off_accuracy")
STD = "sample std over the folds (ddof=1)"
SUMMARY = "folds.json"

__all__ = ["MEASURES", "fold_config", "fold_dir", "format_table", "summarize", "train_folds"]


def fold_dir(run_dir, fold):
    """Where fold `fold` of the run in `run_dir` trains: `run_dir/fold-<k>`."""
    return Path(run_dir) / f"fold-{fold}"


def fold_config(config, fold, run_dir=None):
    """`config` with `fold` as its test fold, into `run_dir` (default `fold_dir`).

    Example:

    >>> from keras_crl.config import TrainConfig
    >>> c = fold_config(TrainConfig(dataset="adience", run_dir="runs/a"), 2)
    >>> c.dataset_options, c.run_dir
    ({'fold': 2}, 'runs/a/fold-2')
    """
    return dataclasses.replace(
        config,
        dataset_options={**config.dataset_options, "fold": fold},
        run_dir=str(run_dir if run_dir is not None else fold_dir(config.run_dir, fold)),
    )


def summarize(rows):
    """Mean and sample std (ddof=1) over folds of each measure in `MEASURES`.

    Args:
        rows: One dict per fold, with `fold` and the `MEASURES` its
            `metrics.json` has.

    Returns:
        A dict: `folds` (the rows), `std` (which std), and per measure
        `{"n", "mean", "std"}` (std None for one fold).

    Example:

    >>> s = summarize([{"fold": 0, "test_accuracy": 0.5}, {"fold": 1, "test_accuracy": 0.7}])
    >>> round(s["test_accuracy"]["mean"], 6), round(s["test_accuracy"]["std"], 6)
    (0.6, 0.141421)
    """
    out = {"folds": rows, "std": STD}
    for measure in MEASURES:
        values = np.array([r[measure] for r in rows if measure in r], float)
        if len(values):
            out[measure] = {
                "n": len(values),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else None,
            }
    return out


def train_folds(config, echo=print):
    """Trains `config` once per fold of its data set; writes `folds.json`.

    `config.run_dir` becomes the folds' parent folder. With `config.resume`,
    folds that finished are read back, not trained, and an interrupted fold
    resumes from its checkpoint.

    Args:
        config: A `TrainConfig` of a data set in `config.DATASET_FOLDS`,
            without a `fold` option; checked with `check_config(config,
            folds="all")` by the caller.
        echo: Where the progress lines go.

    Returns:
        `summarize`'s dict, as written to `run_dir/folds.json`.

    Example:

    ```python
    summary = train_folds(TrainConfig(dataset="adience", data_dir="/data/adience",
                                      run_dir="runs/adience"))
    summary["test_accuracy"]["mean"], summary["test_accuracy"]["std"]
    ```
    """
    import keras

    from keras_crl.train import train

    rows = []
    base = {"config": dataclasses.asdict(dataclasses.replace(config, resume=False))}
    for fold in range(DATASET_FOLDS[config.dataset]):
        one = fold_config(config, fold)
        epochs = one.resolved_recipe().epochs
        if config.resume and run_folder.finished(one.run_dir, epochs):
            metrics = json.loads((Path(one.run_dir) / "metrics.json").read_text())
            echo(f"fold {fold}: done before, read from {one.run_dir}", flush=True)
        else:
            echo(f"fold {fold}: training into {one.run_dir}", flush=True)
            try:
                metrics = train(one)
            finally:
                keras.backend.clear_session()
        rows.append({"fold": fold, "run_dir": one.run_dir, **_measures(metrics)})
        if parallel.is_chief():
            # Written after every fold: --resume reads the settings from it.
            run_folder.write_json(Path(config.run_dir) / SUMMARY, {**base, **summarize(rows)})
    return summarize(rows)


def _measures(metrics):
    return {k: metrics[k] for k in (*MEASURES, "test_images") if k in metrics}


def _percent(x):
    return "-" if x is None else f"{100 * x:.2f}"


def format_table(summary):
    """The folds' test accuracies and their mean ± std, as printed by `train`."""
    measures = [m for m in MEASURES if m in summary]
    names = {"test_accuracy": "test acc", "test_one_off_accuracy": "one-off acc"}
    lines = [("fold", *(names[m] for m in measures), "test images", "run folder")]
    for row in summary["folds"]:
        lines.append(
            (
                str(row["fold"]),
                *(f"{100 * row[m]:.2f} %" for m in measures),
                str(row.get("test_images", "-")),
                row["run_dir"],
            )
        )
    total = [summary[m] for m in measures]
    lines.append(
        (
            "mean ± std",
            *(f"{100 * t['mean']:.2f} ± {_percent(t['std'])}" for t in total),
            "",
            "",
        )
    )
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.insert(-1, out[1])
    return "\n".join(out) + f"\n(std: {STD})"
