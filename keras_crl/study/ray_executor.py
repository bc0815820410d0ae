"""The study's runs as Ray tasks: every GPU of every machine of a Ray cluster.

    keras-crl study --executor ray [--gpus-per-run 1] [--address HOST:PORT]

Each (backend, loss, seed) run is one Ray task asking for `cpus_per_run`
CPUs and `gpus_per_run` GPUs. The task starts

    python -m keras_crl.study.ray_executor OUT_DIR VARIANT SEED

with `KERAS_BACKEND` set (Keras fixes its backend at import, so a
long-lived Ray worker cannot switch) and the study's threads
(`StudySettings.threads`), and that process trains the run with
`runner.train_one`: the same run folder, files and report as the sequential
executor. Every worker must see the study folder at the same path (a shared
file system on a cluster).

Faults: the training process dies with its Ray worker (the parent-death
signal), a killed worker's task is retried and resumes from the run's last
checkpoint, and the run folder's lock (`run_folder.run_lock`) makes a retry
wait for any process of the first attempt still alive. A run that fails for
its own reason (a NaN loss, a loss that raises) is written to `failed.json`
with its message; the others go on. Ctrl-C cancels the tasks.

Without `address`, a local Ray instance starts that listens on 127.0.0.1
only, without a dashboard.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from keras_crl import backends
from keras_crl import run_folder
from keras_crl._optional import optional_import
from keras_crl.config import ConfigError
from keras_crl.study.report import write_report
from keras_crl.study.runner import collect
from keras_crl.study.runner import worker_env
from keras_crl.study.settings import load_settings
from keras_crl.study.settings import run_dir
from keras_crl.study.settings import save_settings

__all__ = ["Progress", "check_options", "missing_runs", "run", "train_in_process"]

# A task whose worker or node died is tried again this many times; the run
# resumes from its checkpoint each time.
MAX_RETRIES = 3
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def check_options(cpus_per_run, gpus_per_run, threads=None):
    """Raises a `ConfigError` naming the first option a Ray task cannot take."""
    for field, value in (("cpus_per_run", cpus_per_run), ("gpus_per_run", gpus_per_run)):
        if not isinstance(value, (int, float)) or value < 0 or (field[0] == "c" and value == 0):
            low = "0" if field[0] == "g" else "more than 0"
            raise ConfigError(field, value, f"must be a number of {low} or more")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ConfigError("threads", threads, "must be an integer of at least 1")


def run(
    settings,
    out_dir,
    *,
    address=None,
    cpus_per_run=1,
    gpus_per_run=0,
    num_cpus=None,
    checkpoint_steps=None,
    echo=print,
    progress=None,
):
    """
    ray_executor.run(settings, "runs/study", gpus_per_run=1)
    ```
    """
    check_options(cpus_per_run, gpus_per_run, settings.threads)
    if settings.threads is None:
        settings.threads = max(1, int(cpus_per_run))
    save_settings(settings, out_dir)
    out_dir = str(Path(out_dir).resolve())
    todo = missing_runs(settings, out_dir)
    progress = progress or Progress(len(todo))
    ray = _start_ray(address, num_cpus)
    try:
        _train_all(
            ray,
            todo,
            settings,
            out_dir,
            cpus_per_run,
            gpus_per_run,
            checkpoint_steps,
            echo,
            progress,
        )
    finally:
        ray.shutdown()
    records = collect(settings, out_dir, require_all=False)
    still = missing_runs(settings, out_dir)
    if still:
        raise RuntimeError(
            f"{len(still)} run(s) did not finish ({', '.join(_tag(*r) for r in still)}); "
            "run the same command again to finish them."
        )
    return write_report(settings, records, out_dir)


def missing_runs(settings, out_dir):
    """The (backend, variant, seed, fold) runs with neither `metrics.json` nor
    `failed.json` (fold None without folds)."""
    return [
        (backend, v, seed, fold)
        for backend in settings.backends
        for v in settings.all_variants()
        for seed, fold in settings.units()
        if not any(
            (run_dir(out_dir, backend, v, seed, fold) / name).exists()
            for name in ("metrics.json", "failed.json")
        )
    ]


def _start_ray(address, num_cpus):
    if address is None:
        # Ray replaces a loopback node address by the machine's outward one
        # unless it believes it runs no cluster; read when Ray is imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = optional_import("ray", "ray", "--executor ray")
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return ray
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in ("127.0.0.1", "::1"):
        ray.shutdown()
        raise RuntimeError(
            f"The local Ray instance would listen on {node_ip}, not loopback only; "
            "start one with `ray start --head --node-ip-address 127.0.0.1` and pass --address."
        )
    return ray


def _train_all(ray, todo, settings, out_dir, cpus, gpus, checkpoint_steps, echo, progress):
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=MAX_RETRIES)(train_in_process)
    refs = {
        task.remote(out_dir, backend, v.name, seed, fold, settings.threads, checkpoint_steps): (
            backend,
            v,
            seed,
            fold,
        )
        for backend, v, seed, fold in todo
    }
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in done:
                backend, v, seed, fold = refs[ref]
                failed = _outcome(ray, ref, run_dir(out_dir, backend, v, seed, fold))
                progress.finished(failed)
                where = f"seed {seed}" + ("" if fold is None else f" fold {fold}")
                echo(f"[{backend}] {v.label:<18} {where}: {failed or 'done'}", flush=True)
            running = sum(run_folder.is_locked(run_dir(out_dir, *refs[r])) for r in pending)
            progress.show(running)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        progress.close()


def _outcome(ray, ref, folder):
    """`None` for a finished run, else why it failed (also in its `failed.json`)."""
    try:
        ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        # The training process exited without a result: record it, retrying
        # would meet the same error.
        message = str(error.cause if error.cause is not None else error).strip()
        if not (folder / "failed.json").exists():
            run_folder.write_json(folder / "failed.json", {"error": message})
    except ray.exceptions.RayError as error:  # worker died past its retries: rerun finishes it
        return f"not finished: {type(error).__name__}"
    if (folder / "failed.json").exists():
        return "FAILED: " + run_folder_error(folder)
    return None


def run_folder_error(folder):
    import json

    return json.loads((Path(folder) / "failed.json").read_text())["error"]


def train_in_process(out_dir, backend, variant_name, seed, fold, threads, checkpoint_steps):
    """One run's Ray task: trains it in a process of its backend and waits for it.

    The process gets a parent-death signal, so it dies with the Ray worker.

    Raises:
        RuntimeError: The process failed without recording why; the message
            ends with its last output.
    """
    folder = run_dir(out_dir, backend, _variant(out_dir, variant_name), seed, fold)
    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{_tag(backend, variant_name, seed, fold).replace('/', '-')}.log"
    args = [out_dir, variant_name, seed, "-" if fold is None else fold]
    if checkpoint_steps:
        args.append(checkpoint_steps)
    with open(log_path, "a") as log:
        proc = backends.start(
            backend,
            "keras_crl.study.ray_executor",
            args,
            worker_env(threads),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(os.getpid()),
        )
        proc.wait()
    if proc.returncode and not (folder / "failed.json").exists():
        tail = log_path.read_text()[-2000:]
        raise RuntimeError(f"exit {proc.returncode}: {tail}")
    return proc.returncode


def _die_with_parent(parent):
    """A `preexec_fn`: the child gets SIGKILL when the process that started it dies."""

    def preexec():
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _variant(out_dir, name):
    for v in load_settings(out_dir).all_variants():
        if v.name == name:
            return v
    raise ValueError(f"{out_dir}/study.json has no loss named {name!r}.")


def _tag(backend, v, seed, fold=None):
    name = v if isinstance(v, str) else v.name
    return f"{backend}/{name}/seed{seed}" + ("" if fold is None else f"/fold-{fold}")


class Progress:
    """Runs finished / running / failed and an ETA, on one terminal line.

    Quiet when `stream` is not a terminal.

    Args:
        total: The runs to train.
        stream: Where the line goes (default `sys.stderr`).
    """

    def __init__(self, total, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.done = self.failed = 0
        self.start = time.monotonic()
        self.on = self.stream.isatty()

    def finished(self, failed):
        self.done += 1
        self.failed += bool(failed)

    def line(self, running):
        elapsed = time.monotonic() - self.start
        left = self.total - self.done
        eta = f"{elapsed / self.done * left:.0f} s" if self.done else "?"
        return (
            f"runs: {self.done - self.failed}/{self.total} finished, {running} running, "
            f"{self.failed} failed, ETA {eta}"
        )

    def show(self, running):
        if self.on:
            self.stream.write("\r" + self.line(running).ljust(72))
            self.stream.flush()

    def close(self):
        if self.on:
            self.stream.write("\n")
            self.stream.flush()


def main(argv=None):
    """`python -m keras_crl.study.ray_executor OUT_DIR VARIANT SEED FOLD [CHECKPOINT_STEPS]`
    (FOLD `-` without folds)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (4, 5):
        raise SystemExit(main.__doc__)
    from keras_crl.study.runner import train_one

    out_dir, name, seed = argv[0], argv[1], int(argv[2])
    fold = None if argv[3] == "-" else int(argv[3])
    steps = int(argv[4]) if len(argv) == 5 else None
    settings = load_settings(out_dir)
    v = _variant(out_dir, name)
    import keras

    try:
        train_one(out_dir, settings, v, seed, fold, checkpoint_steps=steps)
    except Exception as error:  # the run's own failure: recorded, the study goes on
        folder = run_dir(out_dir, keras.backend.backend(), v, seed, fold)
        message = f"{type(error).__name__}: {error}"
        run_folder.write_json(folder / "failed.json", {"error": message})
        print(f"error: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
