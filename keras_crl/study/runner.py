"""Trains a study's runs: one process per backend, resumable, then the report.

    python -m keras_crl.study.runner OUT_DIR

is the per-backend worker: it trains this process's backend's missing runs
of the study described in `OUT_DIR/study.json`.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from keras_crl import backends
from keras_crl import run_folder
from keras_crl.folds import fold_config
from keras_crl.study.report import write_report
from keras_crl.study.settings import load_settings
from keras_crl.study.settings import run_dir
from keras_crl.study.settings import save_settings

# The thread settings a run's process was started with, kept in study_time.json.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "XLA_FLAGS")


def run(settings, out_dir, current_backend, echo=print):
    """Trains every missing run of `settings`, then writes the report.

    Args:
        settings: A `StudySettings`.
        out_dir: The study folder.
        current_backend: The backend this process runs; its runs train here,
            every other backend's in its own process.
        echo: Where progress lines go.

    Returns:
        The aggregates written to `results.json` (see `analyse`).
    """
    save_settings(settings, out_dir)
    for backend in settings.backends:
        # Threads are fixed when a framework starts: pinned runs need a fresh process.
        if backend == current_backend and settings.threads is None:
            train_backend(out_dir, echo=echo)
        else:
            _train_in_subprocess(out_dir, backend, echo, settings.threads)
    records = collect(settings, out_dir)
    return write_report(settings, records, out_dir)


def _train_in_subprocess(out_dir, backend, echo, threads=None):
    env = worker_env(threads)
    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{backend}.stderr.log"
    echo(f"[{backend}] own process; its warnings go to {log_path}", flush=True)
    with open(log_path, "w") as stderr:
        # stdout is inherited: the worker's progress lines show as they come.
        proc = backends.start(backend, "keras_crl.study.runner", [out_dir], env, stderr=stderr)
        proc.wait()
    user_error = backends.worker_error(proc.returncode, log_path.read_text())
    if user_error:
        raise ValueError(f"{backend}: {user_error}")
    if proc.returncode:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"The {backend} runs failed (exit {proc.returncode}):\n{tail}")


def worker_env(threads=None):
    """The environment a run's process adds to this one's: caches and threads.

    Args:
        threads: Pin every framework to this many threads
            (`backends.thread_env`); `None` leaves them as they are.
    """
    # Every run builds and compiles a fresh model; JAX's persistent cache lets
    # the seeds of one loss reuse the first seed's compiled step.
    env = {
        "JAX_COMPILATION_CACHE_DIR": os.environ.get(
            "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "keras_crl_jax_cache")
        ),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": os.environ.get(
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0"
        ),
    }
    if threads is not None:
        env.update(backends.thread_env(threads))
    return env


def train_backend(out_dir, echo=print):
    """Trains this process's backend's missing runs of the study in `out_dir`.

    What `python -m keras_crl.study.runner OUT_DIR` runs. A run whose `metrics.json` exists
    is checked against the settings and skipped; a partial one resumes from
    its `state.npz`. A run whose loss turns NaN is recorded as failed
    (`failed.json`) and not retried: it would fail the same way again.

    Returns:
        The number of runs trained (or resumed) by this call.
    """
    settings = load_settings(out_dir)
    trained = 0
    for v in settings.all_variants():
        for seed, fold in settings.units():
            trained += train_one(out_dir, settings, v, seed, fold, echo=echo) is not None
    return trained


def train_one(out_dir, settings, v, seed, fold=None, echo=print, checkpoint_steps=None):
    """Trains (or resumes, or skips) one run of the study, holding its folder's lock.

    The lock (`run_lock`) waits for any other process still training this
    run, such as the first attempt of a retried Ray task, so two processes
    never write one run folder.

    Args:
        out_dir: The study folder.
        settings: Its `StudySettings`.
        v: The `Variant` (loss).
        seed: The seed.
        fold: The test fold (`--folds all`), or None.
        echo: Where the progress line goes.
        checkpoint_steps: Also checkpoint every this many steps inside an
            epoch (`TrainConfig.checkpoint_steps`).

    Returns:
        The run's metrics, or `None` when it was done or failed before, or
        failed now with a NaN loss (then recorded in `failed.json`).
    """
    import keras

    from keras_crl import train as train_lib

    backend = keras.backend.backend()
    folder = run_dir(out_dir, backend, v, seed, fold)
    config = train_lib.TrainConfig(
        **settings.training,
        **v.train_fields(),
        seed=seed,
        run_dir=str(folder),
        resume=True,
        verbose=0,
        checkpoint_steps=checkpoint_steps,
    )
    if fold is not None:
        config = fold_config(config, fold, folder)
    tag = f"[{backend}] {v.label:<18} seed {seed}"
    tag += "" if fold is None else f" fold {fold}"
    with run_folder.run_lock(folder, echo=echo):
        if (folder / "metrics.json").exists():
            _check_finished(folder, config, backend)
            echo(f"{tag}: done before, skipped", flush=True)
            return None
        if (folder / "failed.json").exists():
            echo(f"{tag}: failed before, skipped (delete its failed.json to retry)", flush=True)
            return None
        resumed = (folder / "state.npz").exists()
        start, began = time.perf_counter(), time.time()
        try:
            metrics = train_lib.train(config)
        except FloatingPointError as error:
            run_folder.write_json(folder / "failed.json", {"error": str(error)})
            echo(f"{tag}: FAILED: {error}", flush=True)
            return None
        finally:
            # Each run builds a new model; free the previous graph.
            keras.backend.clear_session()
        wall = time.perf_counter() - start
        run_folder.write_json(
            folder / "study_time.json",
            {
                "wall_seconds": wall,
                "resumed": resumed,
                "start": began,
                "end": time.time(),
                # What the executor set (backends.thread_env); None: not pinned.
                "threads": {k: os.environ.get(k) for k in THREAD_VARIABLES},
            },
        )
    echo(
        f"{tag}: test {100 * metrics['test_accuracy']:.2f} %  "
        f"({wall:.1f} s{', resumed' if resumed else ''})",
        flush=True,
    )
    return metrics


def _check_finished(folder, config, backend):
    """A finished run must be the run the study asks for."""
    from keras_crl.config import loss_parameters

    metrics = json.loads((folder / "metrics.json").read_text())
    alpha, beta = loss_parameters(config)
    expected = {
        "backend": backend,
        "loss": config.loss,
        "alpha": alpha,
        "beta": beta,
        "label_smoothing": config.label_smoothing,
        "loss_options": config.loss_options,
        "seed": config.seed,
        "epochs": config.resolved_recipe().epochs,
    }
    wrong = {k: metrics.get(k) for k, v in expected.items() if metrics.get(k) != v}
    if wrong:
        raise ValueError(
            f"{folder}/metrics.json does not belong to this study: {wrong} (expected {expected})."
        )


def collect(settings, out_dir, require_all=True):
    """Every run's numbers and training curves, read from the run folders.

    Returns:
        A list of dicts, one per run: backend, variant (name), label, loss,
        alpha, beta, label_smoothing, loss_options, seed, fold (None without folds), failed,
        test_accuracy, test_one_off_accuracy (None where not measured), best_epoch,
        best_val_accuracy, final_train_loss, seconds_per_epoch, the calibration
        figures (test_ece, test_nll, test_brier, test_confidence and
        test_calibration_bins; None for a run trained before them), wall_seconds,
        run (the folder relative to `out_dir`), config (dataset sizes and
        recipe of the run) and log (`log.csv` columns).

    Raises:
        FileNotFoundError: A run has neither `metrics.json` nor `failed.json`
            (and `require_all`).
    """
    out_dir = Path(out_dir)
    records, missing = [], []
    for backend in settings.backends:
        for v in settings.all_variants():
            for seed, fold in settings.units():
                folder = run_dir(out_dir, backend, v, seed, fold)
                record = {
                    "backend": backend,
                    **v.as_record(),
                    "seed": seed,
                    "fold": fold,
                    "run": str(folder.relative_to(out_dir)),
                }
                if (folder / "metrics.json").exists():
                    metrics = json.loads((folder / "metrics.json").read_text())
                    record.update(
                        failed=False,
                        **{
                            k: metrics.get(k)
                            for k in (
                                "test_accuracy",
                                "test_one_off_accuracy",
                                "test_images",
                                "best_epoch",
                                "best_val_accuracy",
                                "final_train_loss",
                                "seconds_per_epoch",
                                # keras_crl.calibration's figures (stats.CALIBRATION)
                                "test_ece",
                                "test_nll",
                                "test_brier",
                                "test_confidence",
                                "test_calibration_bins",
                            )
                        },
                    )
                elif (folder / "failed.json").exists():
                    record.update(
                        failed=True,
                        test_accuracy=None,
                        error=json.loads((folder / "failed.json").read_text())["error"],
                    )
                else:
                    missing.append(str(folder))
                    continue
                timing = folder / "study_time.json"
                record["wall_seconds"] = (
                    json.loads(timing.read_text())["wall_seconds"] if timing.exists() else None
                )
                if (folder / "config.json").exists():
                    config = json.loads((folder / "config.json").read_text())
                    record["config"] = {
                        k: config[k] for k in ("dataset", "recipe", "milestones_used")
                    }
                record["log"] = run_folder.read_log(folder / "log.csv")
                records.append(record)
    if missing and require_all:
        raise FileNotFoundError("Runs without results: " + ", ".join(missing))
    return records


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m keras_crl.study.runner OUT_DIR")
    from keras_crl.config import USER_ERRORS

    try:
        train_backend(argv[0])
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return backends.USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
