"""The `keras-crl` command: flags in, `TrainConfig` / `StudySettings` out.

    keras-crl                      the main job: CRL vs cross-entropy on the
                                   bundled digits data, about a minute on a CPU
    keras-crl train [options]      one training run into a run folder
    keras-crl compare-backends     the same training on TensorFlow, PyTorch
                                   and JAX, compared
    keras-crl study [options]      CE vs NLLR vs CRL over seeds and backends:
                                   a report with paired comparisons

This is the only module that knows about argparse. `--backend` chooses the
Keras backend; Keras fixes its backend when it is first imported, so when the
flag differs from the backend already loaded the command restarts itself with
`KERAS_BACKEND` set. A user's mistake (an unknown name, a missing data set, a
corrupt file) ends the command with one line on stderr and exit status 2;
set `KERAS_CRL_TRACEBACK=1` to see the traceback instead.
"""

import argparse
import dataclasses
import os
import sys

from keras_crl.backends import BACKENDS
from keras_crl.backends import check_backends
from keras_crl.data import DatasetNotAvailable

# A user's mistakes: names and values, corrupt or mismatched files (the
# loaders name the file), missing data, a loss that became NaN.
USER_ERRORS = (ValueError, FileNotFoundError, DatasetNotAvailable, FloatingPointError)

# Mid-epoch checkpoints by default: a preempted run loses at most this much
# training; at this interval saving costs well under 1 % of the training time
# of ResNet-18 on CIFAR shapes (benchmarks/results/checkpoint_overhead.md).
CHECKPOINT_EVERY = "10min"
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_every(text):
    """`--checkpoint-every` -> `(steps, seconds)`, each None when not asked.

    Example:

    >>> parse_every("500,10min")
    (500, 600.0)
    >>> parse_every("epoch")
    (None, None)
    """
    steps = seconds = None
    for part in str(text).lower().replace(" ", "").split(","):
        number = part.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = part[len(number) :]
        try:
            value = float(number) if unit else int(number)
        except ValueError:
            value = None
        if part == "epoch":
            continue
        if value is None or not value > 0 or (unit and unit not in _SECONDS):
            raise ValueError(
                f"--checkpoint-every {text!r}: expected steps (500), a duration "
                "(30s, 10min, 1h), both (500,10min) or 'epoch'."
            )
        if unit:
            seconds = value * _SECONDS[unit]
        else:
            steps = value
    return steps, seconds


# The main job's settings: small enough for about a minute on 2 CPU cores.
DEMO = {"epochs": 12, "batch_size": 64, "learning_rate": 0.05}
# compare-backends: digits, two minutes for all three backends. lr 0.02, not
# 0.05: at 0.05 this small net's trajectory is chaotic and float32 rounding
# alone separates the backends (see tests/cross_backend).
COMPARE = {"epochs": 10, "batch_size": 64, "learning_rate": 0.02}


def _add_data_and_recipe_arguments(parser, defaults):
    """The flags of what is trained and how: shared by every command."""
    add = parser.add_argument
    add("--model", default="small_cnn", help="zoo model name (see `train --list`)")
    add(
        "--dataset",
        default="digits",
        help="digits (bundled, default), synthetic, cifar10, cifar100, svhn, folder, "
        "folder_stream (decoded batch by batch: folders larger than memory)",
    )
    add("--data-dir", help="where data sets are found or downloaded; for 'folder' the image folder")
    add("--image-size", type=int, help="resize folder data sets to this square size")
    add(
        "--data-workers",
        type=int,
        help="folder_stream: decoding threads (default: the CPU count; 0: in the training loop)",
    )
    add("--recipe", default="paper", help="paper (default) or cosine")
    add(
        "--epochs",
        type=int,
        default=defaults.get("epochs"),
        help="epochs (the recipe's milestones are scaled to it)",
    )
    add("--batch-size", type=int, default=defaults.get("batch_size"))
    add("--lr", type=float, dest="learning_rate", default=defaults.get("learning_rate"))
    add("--momentum", type=float)
    add("--weight-decay", type=float, help="coupled L2, as PyTorch's SGD")
    add("--schedule", choices=("step", "cosine", "constant"))
    add("--no-augment", dest="augment", action="store_false", default=None)
    add("--validation-split", type=float, default=0.1)
    add("--limit", type=int, help="train on the first N training images only")
    add(
        "--jit",
        choices=("auto", "on", "off"),
        default="auto",
        help="compile the train step with XLA (TensorFlow, JAX); on: a compiled step or an "
        "error (TensorFlow needs --no-deterministic; torch: refused); auto: Keras' choice "
        "(default)",
    )
    add(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="deterministic kernels: TensorFlow op determinism, torch deterministic "
        "algorithms (default: on; the seeds are set either way)",
    )
    add("--precision", default="float32", choices=("float32", "mixed_float16", "mixed_bfloat16"))


def _add_run_arguments(parser):
    """The flags of one training run: its loss, seed, devices and output."""
    add = parser.add_argument
    add(
        "--loss",
        default="crl",
        help="crl, nllr, ce, focal[:gamma=G], or your own loss as package.module:Class"
        "[:name=value...] (built with those keyword arguments; from_logits=True when it takes "
        "it; add :one_hot=True if it wants one-hot targets)",
    )
    add("--alpha", type=float, default=0.0, help="CRL alpha (default 0, the authors')")
    add("--beta", type=float, default=0.25, help="CRL beta (default 0.25, the authors')")
    add("--label-smoothing", type=float, default=0.0)
    add("--seed", type=int, default=0)
    add("--init-weights", help="a .weights.h5 file to start from")
    add(
        "--devices",
        type=int,
        default=1,
        help="data-parallel devices (jax: DataParallel, tensorflow: MirroredStrategy, "
        "torch: DistributedDataParallel, one process per device started with torchrun)",
    )
    add("--channels-first", action="store_true", help="train in channels_first layout")
    add("--verbose", type=int, default=1, choices=(0, 1, 2))


def _add_cluster_arguments(parser):
    """Several processes (machines): the same command on each, but --process-id."""
    add = parser.add_argument_group(
        "several processes",
        "the same command on every process (default: Keras' KERAS_DISTRIBUTION_JOB_ADDRESSES, "
        "_NUM_PROCESSES, _PROCESS_ID); --devices and the batch size stay per process and "
        "global; process 0 writes the run folder, which all must be able to read",
    ).add_argument
    add(
        "--coordinator",
        metavar="HOST:PORT",
        help="process 0's address, reachable by all; TensorFlow: every process's, "
        "comma-separated in process order (process 0's first)",
    )
    add(
        "--num-processes",
        type=int,
        metavar="N",
        help="processes in all (torch: machines, each starting --devices processes)",
    )
    add("--process-id", type=int, metavar="I", help="0 (the chief) .. N-1")
    add(
        "--cluster-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="fail if the processes have not all joined within this (default 300)",
    )


def cluster_from_args(args):
    """The `parallel.Cluster` of the flags or, without them, of the environment."""
    from keras_crl import parallel

    flags = (args.coordinator, args.num_processes, args.process_id)
    if all(f is None for f in flags):
        return parallel.cluster_from_environment(timeout=args.cluster_timeout)
    if any(f is None for f in flags):
        raise ValueError("--coordinator, --num-processes and --process-id go together.")
    return parallel.Cluster.of(*flags, timeout=args.cluster_timeout)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-crl",
        description="Competing Ratio Loss for Keras 3 on TensorFlow, PyTorch and JAX. "
        "With no command: CRL vs cross-entropy on the bundled digits data.",
    )
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="the main job (also what no command runs)")
    _add_data_and_recipe_arguments(demo, DEMO)
    _add_run_arguments(demo)
    demo.add_argument("--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND)")
    demo.add_argument("--run-dir", default="runs/demo")

    train = sub.add_parser("train", help="train one model into a run folder")
    _add_data_and_recipe_arguments(train, {})
    _add_run_arguments(train)
    train.add_argument(
        "--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND)"
    )
    train.add_argument(
        "--run-dir", help="run folder (default runs/<model>-<dataset>-<loss>-<backend>-s<seed>)"
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir at the step after its last checkpoint",
    )
    train.add_argument(
        "--checkpoint-every",
        metavar="EVERY",
        help="also checkpoint inside epochs: every N steps (500), every duration of training "
        "(30s, 10min, 1h), both (500,10min), or only at epoch ends (epoch); "
        f"default {CHECKPOINT_EVERY} (epoch for TensorFlow across processes)",
    )
    train.add_argument(
        "--keep-checkpoints",
        type=int,
        default=1,
        metavar="K",
        help="keep the newest K checkpoints (state.npz and state-EPOCH-STEP.npz); default 1",
    )
    train.add_argument("--list", action="store_true", help="list models and datasets, then exit")
    _add_cluster_arguments(train)

    compare = sub.add_parser(
        "compare-backends",
        help="the same training on tensorflow, torch and jax, one process each, compared",
        description="Trains once per backend from the same seeded initial weights on the "
        "same batches and compares the runs. Defaults: "
        + ", ".join(f"{k} {v}" for k, v in COMPARE.items())
        + ".",
    )
    _add_data_and_recipe_arguments(compare, COMPARE)
    _add_run_arguments(compare)
    compare.add_argument("--out-dir", default="runs/compare-backends")
    compare.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated; the first is the reference"
    )

    study = sub.add_parser(
        "study",
        help="CRL vs CE, NLLR, label smoothing, focal loss and your own losses, over seeds "
        "(and backends, alpha x beta): report.md with plots",
        description="Trains every loss with every seed (default 8) on each backend (each in its "
        "own process) and writes report.md: test accuracy (best-on-validation weights) as mean "
        "± std, paired differences to cross-entropy and of the authors' CRL to each other loss, "
        "training curves and time. On the bundled "
        "digits the defaults are 30 epochs, batch 64, lr 0.05. Rerun the same command to "
        "resume: finished runs are skipped.",
    )
    _add_data_and_recipe_arguments(study, {})
    add = study.add_argument
    add("--seeds", type=int, help="seeds 0..N-1 per loss and backend (default 8, --quick 2)")
    add("--backends", help="comma-separated, e.g. tensorflow,torch,jax (default: the current one)")
    add(
        "--extra",
        action="append",
        default=[],
        metavar="LOSS",
        help="another loss to compare (repeatable): crl:ALPHA:BETA, ce, nllr or focal, each "
        "with optional :label_smoothing=S (focal: :gamma=G), or your own "
        "package.module:Class[:name=value...] (see train --loss); checked before any run",
    )
    add(
        "--sweep",
        action="store_true",
        help="also alpha in {0, 0.5, 1} x beta in {0, 0.25, 0.5, 0.75, 1}, with a heat map",
    )
    add(
        "--quick",
        action="store_true",
        help="2 seeds, 8 epochs: a smoke check of the whole pipeline",
    )
    add("--out-dir", default="runs/study", help="study folder: report.md, results.json, runs/")
    return parser


def _loss_fields(text, label_smoothing):
    """`--loss focal:gamma=2` or `--loss package.module:Class:k=v`: the
    `TrainConfig` fields of the loss (as the study's `--extra` reads them)."""
    if text in ("crl", "nllr", "ce"):
        return {}
    from keras_crl.study.variants import parse_variant

    fields = parse_variant(text).train_fields()
    del fields["alpha"], fields["beta"]
    fields["label_smoothing"] = fields["label_smoothing"] or label_smoothing
    return fields


def config_from_args(args, run_dir):
    """The `TrainConfig` the flags describe (run flags absent: defaults)."""
    from keras_crl.train import TrainConfig

    options = {}
    if args.image_size:
        options["image_size"] = (args.image_size, args.image_size)
    if args.dataset in ("folder", "folder_stream"):
        if not args.data_dir:
            raise ValueError(
                f"--dataset {args.dataset} needs --data-dir PATH (one sub-folder per class)."
            )
        options["path"] = args.data_dir
    if args.data_workers is not None:
        if args.dataset != "folder_stream":
            raise ValueError("--data-workers applies to --dataset folder_stream only.")
        options["workers"] = args.data_workers
    run = {}
    if hasattr(args, "checkpoint_every"):
        run["checkpoint_steps"], run["checkpoint_seconds"] = parse_every(
            args.checkpoint_every or CHECKPOINT_EVERY
        )
        if args.keep_checkpoints < 1:
            raise ValueError(f"--keep-checkpoints {args.keep_checkpoints}: expected 1 or more.")
        run["keep_checkpoints"] = args.keep_checkpoints
    if hasattr(args, "loss"):
        run.update(
            loss=args.loss,
            alpha=args.alpha,
            beta=args.beta,
            label_smoothing=args.label_smoothing,
            **_loss_fields(args.loss, args.label_smoothing),
            seed=args.seed,
            init_weights=args.init_weights,
            devices=args.devices,
            data_format="channels_first" if args.channels_first else "channels_last",
            verbose=args.verbose,
        )
    return TrainConfig(
        model=args.model,
        dataset=args.dataset,
        recipe=args.recipe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        augment=args.augment,
        validation_split=args.validation_split,
        data_dir=None if "path" in options else args.data_dir,
        dataset_options=options,
        limit=args.limit,
        run_dir=run_dir,
        jit={"auto": "auto", "on": True, "off": False}[args.jit],
        deterministic=args.deterministic,
        precision=args.precision,
        resume=getattr(args, "resume", False),
        **run,
    )


def main(argv=None):
    """Runs `keras-crl ARGV`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["demo", *argv]
    args = build_parser().parse_args(argv)
    if args.command is None:
        args = build_parser().parse_args(["demo"])
    try:
        _use_backend(getattr(args, "backend", None), argv)
        return COMMANDS[args.command](args, argv)
    except USER_ERRORS as error:
        if os.environ.get("KERAS_CRL_TRACEBACK"):
            raise
        print(f"keras-crl {args.command}: error: {error}", file=sys.stderr)
        return 2


def _use_backend(backend, argv):
    """Restarts under `backend` if Keras already loaded another one."""
    if not backend:
        return
    import keras

    if keras.backend.backend() != backend:
        from keras_crl.backends import backend_env
        from keras_crl.backends import installed_backends

        if backend not in installed_backends():
            raise ValueError(
                f"--backend {backend}: {backend} is not installed. Installed: "
                f"{', '.join(installed_backends())}. (pip install 'keras-crl[{backend}]')"
            )
        env = backend_env(backend)
        os.execve(sys.executable, [sys.executable, "-m", "keras_crl.cli", *argv], env)


def run_train(args, argv):
    import keras

    from keras_crl import data
    from keras_crl import models
    from keras_crl import parallel
    from keras_crl.train import train

    if args.list:
        print("models:  ", ", ".join(models.list_models()))
        print("datasets:", ", ".join(data.list_datasets()))
        return 0
    cluster = cluster_from_args(args)
    if (
        keras.backend.backend() == "torch"
        and (args.devices > 1 or cluster)
        and not parallel.launched_by_torchrun()
    ):
        # DistributedDataParallel: one process per device, started by torchrun.
        command = parallel.torchrun_command(args.devices, argv, cluster)
        os.execve(sys.executable, command, dict(os.environ, KERAS_BACKEND="torch"))
    run_dir = args.run_dir or (
        f"runs/{args.model}-{args.dataset}-{args.loss.replace(':', '-')}-"
        f"{keras.backend.backend()}-s{args.seed}"
    )
    config = config_from_args(args, run_dir)
    if cluster and keras.backend.backend() == "tensorflow" and args.checkpoint_every is None:
        # It checkpoints at epoch ends only (parallel.checks_epoch_ends_only).
        config = dataclasses.replace(config, checkpoint_steps=None, checkpoint_seconds=None)
    parallel.join(cluster)
    metrics = train(config)
    if not parallel.is_chief():
        return 0
    print(_table([metrics]))
    print(f"\nRun folder: {run_dir}")
    return 0


def run_demo(args, argv):
    import keras

    from keras_crl.train import train

    print(
        f"keras-crl main job: {args.model} on {args.dataset}, backend "
        f"{keras.backend.backend()}, {args.epochs} epochs per loss\n"
    )
    results = []
    for loss in ("ce", "crl"):
        config = config_from_args(args, os.path.join(args.run_dir, loss))
        config = dataclasses.replace(
            config, loss=loss, verbose=0 if args.verbose == 1 else args.verbose
        )
        print(f"training with {loss} ...", flush=True)
        results.append(train(config))
    print()
    print(_table(results))
    print(f"\nRun folders (config, log.csv, weights, metrics, plots): {args.run_dir}/{{ce,crl}}")
    return 0


def run_compare(args, argv):
    from keras_crl.compare import compare_backends
    from keras_crl.compare import format_table

    backends = check_backends(args.backends)
    rows = compare_backends(config_from_args(args, args.out_dir), args.out_dir, backends)
    print()
    print(format_table(rows))
    print(f"\nRuns, comparison.md and loss/accuracy overlays: {args.out_dir}")
    return 0


def run_study(args, argv):
    import keras

    from keras_crl import study

    current = keras.backend.backend()
    settings = study.resolve_settings(
        dataclasses.asdict(config_from_args(args, run_dir="")),
        seeds=args.seeds,
        backends=args.backends or current,
        extra=args.extra,
        sweep=args.sweep,
        quick=args.quick,
        out_dir=args.out_dir,
    )
    n_variants = len(settings.all_variants())
    n_runs = len(settings.backends) * n_variants * len(settings.seeds)
    print(
        f"keras-crl study: {n_variants} losses x {len(settings.seeds)} seeds "
        f"x {len(settings.backends)} backend(s) = {n_runs} runs into {args.out_dir}",
        flush=True,
    )
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


if __name__ == "__main__":
    sys.exit(main())
