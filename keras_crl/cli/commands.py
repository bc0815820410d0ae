"""What each `keras-crl` command does once its flags are parsed.

Each `run_*` takes the parsed flags and the command line, and returns the
exit status. Keras is imported here, never before the backend is chosen.
"""

import dataclasses
import math
import os
import sys
from pathlib import Path

from keras_crl.backends import check_backends
from keras_crl.cli.flags import given_flags
from keras_crl.cli.to_config import config_from_args
from keras_crl.cli.to_config import resume_from_run_folder


def cluster_from_args(args):
    """The `parallel.Cluster` of the flags or, without them, of the environment."""
    from keras_crl import parallel

    flags = (args.coordinator, args.num_processes, args.process_id)
    if all(f is None for f in flags):
        return parallel.cluster_from_environment(timeout=args.cluster_timeout)
    if any(f is None for f in flags):
        raise ValueError("--coordinator, --num-processes and --process-id go together.")
    return parallel.Cluster.of(*flags, timeout=args.cluster_timeout)


def train_config(parser, args, argv):
    """`train`'s checked `TrainConfig`; with `--resume`, the run folder's settings."""
    import keras

    from keras_crl import run_folder
    from keras_crl.config import check_config

    run_dir = args.run_dir or (
        f"runs/{args.model}-{args.dataset}-{args.loss.replace(':', '-')}-"
        f"{keras.backend.backend()}-s{args.seed}"
    )
    config = config_from_args(args, run_dir)
    if args.folds:
        return _folds_config(parser, args, argv, config)
    if args.resume:
        config = resume_from_run_folder(config, given_flags(parser, "train", argv))
        if not (Path(run_dir) / "state.npz").exists():
            print(
                f"keras-crl train: --resume: {run_dir} has no checkpoint (state.npz); "
                "starting a fresh run.",
                file=sys.stderr,
            )
        elif run_folder.finished(run_dir, config.resolved_recipe().epochs):
            print(
                f"keras-crl train: --resume: {run_dir} has trained all its epochs; nothing to "
                "train (give more --epochs to train further). Its metrics:",
                file=sys.stderr,
            )
    check_config(config)
    return config


def _folds_config(parser, args, argv, config):
    """`train --folds all`'s checked base `TrainConfig`; with `--resume`, its `folds.json`'s."""
    from keras_crl.config import check_config
    from keras_crl.folds import SUMMARY

    saved = Path(config.run_dir) / SUMMARY
    if args.resume and saved.exists():
        given = given_flags(parser, "train", argv)
        config = resume_from_run_folder(config, given, saved=saved)
    elif args.resume:
        print(
            f"keras-crl train: --resume: {config.run_dir} has no {SUMMARY}; training every fold.",
            file=sys.stderr,
        )
    check_config(config, folds=args.folds)
    return config


def torchrun_command(devices, argv, cluster=None):
    """The command that reruns `python -m keras_crl.cli argv` under torchrun.

    Args:
        devices: Processes to start on this machine, one per device.
        argv: The command line arguments, without the program name.
        cluster: Several machines: a `parallel.Cluster` of one process per
            machine (torchrun's nodes; process 0's machine holds the
            rendezvous), each starting `devices` processes. `None`: this
            machine alone.

    Returns:
        A list for `subprocess` / `os.execv`.

    Example:

    >>> from keras_crl.parallel import Cluster
    >>> cluster = Cluster("10.0.0.1:29500", num_processes=2, process_id=1, timeout=60)
    >>> torchrun_command(2, ["train"], cluster)[3:6]
    ['--nnodes=2', '--node-rank=1', '--master-addr=10.0.0.1']
    >>> torchrun_command(2, ["train"], cluster)[6:8]
    ['--master-port=29500', '--rdzv-conf=timeout=60']
    """
    if cluster is None:
        where = ["--standalone"]
    else:
        host, _, port = cluster.coordinator.rpartition(":")
        # Static rendezvous: ranks follow --node-rank, so process 0 is the chief.
        where = [
            f"--nnodes={cluster.num_processes}",
            f"--node-rank={cluster.process_id}",
            f"--master-addr={host}",
            f"--master-port={port}",
            f"--rdzv-conf=timeout={math.ceil(cluster.timeout)}",
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *where,
        f"--nproc-per-node={devices}",
        "-m",
        "keras_crl.cli",
        *argv,
    ]


def run_train(parser, args, argv):
    import keras

    from keras_crl import data
    from keras_crl import models
    from keras_crl import parallel
    from keras_crl.train import train

    if args.list:
        print("models:  ", ", ".join(models.list_models()))
        print("datasets:", ", ".join(data.list_datasets()))
        return 0
    config = train_config(parser, args, argv)
    cluster = cluster_from_args(args)
    if (
        keras.backend.backend() == "torch"
        and (args.devices > 1 or cluster)
        and not parallel.launched_by_torchrun()
    ):
        # DistributedDataParallel: one process per device, started by torchrun.
        command = torchrun_command(args.devices, argv, cluster)
        os.execve(sys.executable, command, dict(os.environ, KERAS_BACKEND="torch"))
    if cluster and keras.backend.backend() == "tensorflow" and args.checkpoint_every is None:
        # It checkpoints at epoch ends only (parallel.checks_epoch_ends_only).
        config = dataclasses.replace(config, checkpoint_steps=None, checkpoint_seconds=None)
    parallel.join(cluster)
    if args.folds:
        return _train_folds(config)
    metrics = train(config)
    if not parallel.is_chief():
        return 0
    print(_table([metrics]))
    print(f"\nRun folder: {config.run_dir}")
    return 0


def _train_folds(config):
    from keras_crl import folds
    from keras_crl import parallel

    summary = folds.train_folds(config)
    if parallel.is_chief():
        print(folds.format_table(summary))
        print(f"\nRun folder: {config.run_dir} (fold-K/ for each fold, {folds.SUMMARY})")
    return 0


def run_demo(parser, args, argv):
    import keras

    from keras_crl.config import check_config
    from keras_crl.train import train

    configs = []
    for loss in ("ce", "crl"):
        config = config_from_args(args, os.path.join(args.run_dir, loss))
        config = dataclasses.replace(
            config, loss=loss, verbose=0 if args.verbose == 1 else args.verbose
        )
        check_config(config)
        configs.append(config)
    print(
        f"keras-crl main job: {args.model} on {args.dataset}, backend "
        f"{keras.backend.backend()}, {args.epochs} epochs per loss\n"
    )
    results = []
    for config in configs:
        print(f"training with {config.loss} ...", flush=True)
        results.append(train(config))
    print()
    print(_table(results))
    print(f"\nRun folders (config, log.csv, weights, metrics, plots): {args.run_dir}/{{ce,crl}}")
    return 0


def run_compare(parser, args, argv):
    from keras_crl.compare import compare_backends
    from keras_crl.compare import format_table

    backends = check_backends(args.backends)
    rows = compare_backends(config_from_args(args, args.out_dir), args.out_dir, backends)
    print()
    print(format_table(rows))
    print(f"\nRuns, comparison.md and loss/accuracy overlays: {args.out_dir}")
    return 0


def run_study(parser, args, argv):
    import keras

    from keras_crl import study
    from keras_crl.study import benchmarks

    if args.benchmark == "list":
        print(benchmarks.benchmark_table())
        return 0
    variants = None
    if args.benchmark:
        preset = benchmarks.get_benchmark(args.benchmark)
        given = given_flags(parser, "study", argv)
        for dest, value in benchmarks.preset_flags(preset, given).items():
            setattr(args, dest, value)
        variants = preset.variants()
    from keras_crl.study import ray_executor
    from keras_crl.study.settings import command_line

    ray_executor.check_options(args.cpus_per_run, args.gpus_per_run, args.threads)
    current = keras.backend.backend()
    settings = study.resolve_settings(
        dataclasses.asdict(config_from_args(args, run_dir="")),
        seeds=args.seeds,
        backends=args.backends or current,
        extra=args.extra,
        sweep=args.sweep,
        quick=args.quick,
        out_dir=args.out_dir,
        folds=args.folds,
        variants=variants,
        benchmark=args.benchmark or "",
    )
    n_variants = len(settings.all_variants())
    n_runs = len(settings.backends) * n_variants * len(settings.units())
    folds = f" x {len(settings.folds)} folds" if settings.folds else ""
    print(
        f"keras-crl study: {n_variants} losses x {len(settings.seeds)} seeds{folds} "
        f"x {len(settings.backends)} backend(s) = {n_runs} runs into {args.out_dir}",
        flush=True,
    )
    settings.threads = args.threads
    settings.command = command_line(settings, args.out_dir)  # with the threads
    if args.executor == "ray":
        results = ray_executor.run(
            settings,
            args.out_dir,
            address=args.address,
            cpus_per_run=args.cpus_per_run,
            gpus_per_run=args.gpus_per_run,
        )
    elif args.address:
        raise ValueError("--address goes with --executor ray.")
    else:
        results = study.run(settings, args.out_dir, current)
    print()
    print(study.main_table(results))
    print(
        f"\nReport: {os.path.join(args.out_dir, 'report.md')} (plots and results.json next to it)"
    )
    return 0


COMMANDS = {
    "demo": run_demo,
    "train": run_train,
    "compare-backends": run_compare,
    "study": run_study,
}


def _table(rows):
    header = ("loss", "alpha", "beta", "backend", "test acc", "best val acc", "epoch s", "img/s")
    lines = [header]
    for m in rows:
        alpha_beta = (f"{m['alpha']:g}", f"{m['beta']:g}") if m["loss"] == "crl" else ("-", "-")
        lines.append(
            (
                m["loss"],
                *alpha_beta,
                m["backend"],
                f"{100 * m['test_accuracy']:.2f} %",
                f"{100 * m['best_val_accuracy']:.2f} %"
                if m["best_val_accuracy"] is not None
                else "-",
                f"{m['seconds_per_epoch']:.2f}" if m["seconds_per_epoch"] else "-",
                f"{m['images_per_second']:.0f}" if m["images_per_second"] else "-",
            )
        )
    widths = [max(len(str(row[i])) for row in lines) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
