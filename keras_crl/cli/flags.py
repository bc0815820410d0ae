"""The command line's flags: the parser, its --help examples, which flags a command
line set (`to_config.py` turns them into a `TrainConfig`).

This module imports neither Keras nor a backend: `keras-crl --backend X`
chooses the backend after parsing, before Keras is first imported.
"""

import argparse

from keras_crl.backends import BACKENDS

# Mid-epoch checkpoints by default: a preempted run loses at most this much
# training; at this interval saving costs well under 1 % of the training time
# of ResNet-18 on CIFAR shapes (benchmarks/results/checkpoint_overhead.md).
CHECKPOINT_EVERY = "10min"
_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
# The main job's settings: small enough for about a minute on 2 CPU cores.
DEMO = {"epochs": 12, "batch_size": 64, "learning_rate": 0.05}
# compare-backends: digits, two minutes for all three backends. lr 0.02, not
# 0.05: at 0.05 this small net's trajectory is chaotic and float32 rounding
# alone separates the backends (see tests/cross_backend).
COMPARE = {"epochs": 10, "batch_size": 64, "learning_rate": 0.02}
# Flags that set TrainConfig fields of other names (the rest share the name).
FLAG_FIELDS = {
    "image_size": ("dataset_options",),
    "data_workers": ("dataset_options",),
    "fold": ("dataset_options",),
    "weights": ("model_options",),
    "batch_norm": ("model_options",),
    "data_dir": ("data_dir", "dataset_options"),
    "loss": ("loss", "loss_options", "label_smoothing"),
    "channels_first": ("data_format",),
    "checkpoint_every": ("checkpoint_steps", "checkpoint_seconds"),
}
# TrainConfig fields and data set options named differently on the command line.
FIELD_FLAGS = {
    "workers": "--data-workers",
    "path": "--data-dir",
    "data_format": "--channels-first",
    "checkpoint_steps": "--checkpoint-every",
    "checkpoint_seconds": "--checkpoint-every",
    "loss_options": "--loss",
}


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


def _add_data_and_recipe_arguments(parser, defaults):
    """The flags of what is trained and how: shared by every command."""
    add = parser.add_argument
    add("--model", default="small_cnn", help="zoo model name (see `train --list`)")
    add(
        "--dataset",
        default="digits",
        help="digits (bundled, default), synthetic, cifar10, cifar100, svhn, folder, "
        "folder_stream (decoded batch by batch: folders larger than memory), cub200, "
        "stanford_cars, adience, imagenet (from their publishers' files in --data-dir)",
    )
    add("--data-dir", help="where data sets are found or downloaded; for 'folder' the image folder")
    add("--image-size", type=int, help="folder data sets: resize to this square size")
    add(
        "--data-workers",
        type=int,
        help="folder_stream: decoding threads (default: the CPU count; 0: in the training loop)",
    )
    add("--fold", type=int, help="adience: the test fold, 0 to 4 (default 0)")
    add(
        "--weights",
        help="keras_app_* and keras_hub_* models: start the backbone from 'imagenet' "
        "(downloaded by Keras or keras-hub, or found in their caches) or from a .weights.h5 "
        "file of the backbone",
    )
    add(
        "--recipe",
        default="paper",
        help="paper (default), cosine, imagenet or finegrained (see docs/guide/benchmarks.md)",
    )
    add(
        "--no-batch-norm",
        dest="batch_norm",
        action="store_false",
        help="small_cnn: no batch normalization (conv biases instead)",
    )
    add(
        "--epochs",
        type=int,
        default=defaults.get("epochs"),
        help="epochs (the recipe's milestones are scaled to it)",
    )
    add("--batch-size", type=int, default=defaults.get("batch_size"))
    add("--lr", type=float, dest="learning_rate", default=defaults.get("learning_rate"))
    add("--momentum", type=float, help="SGD momentum, in [0, 1)")
    add("--weight-decay", type=float, help="coupled L2, as PyTorch's SGD")
    add("--schedule", choices=("step", "cosine", "constant"))
    add(
        "--backbone-lr-scale",
        type=float,
        help="learning rate of every layer but the logits head, as a fraction of --lr "
        "(finegrained recipe: 0.1)",
    )
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
    add("--alpha", type=float, help="CRL alpha (default 0, the authors'); crl only")
    add("--beta", type=float, help="CRL beta (default 0.25, the authors'); crl only")
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


def _add_train_arguments(train):
    _add_data_and_recipe_arguments(train, {})
    _add_run_arguments(train)
    add = train.add_argument
    add("--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND)")
    add("--run-dir", help="run folder (default runs/<model>-<dataset>-<loss>-<backend>-s<seed>)")
    add(
        "--resume",
        action="store_true",
        help="continue the run in --run-dir at the step after its last checkpoint, with its "
        "settings: flags given here must agree with them, except --epochs (step and constant "
        "schedules), --backend and how it runs (--jit, --verbose, checkpoints); without a "
        "checkpoint the run starts fresh, with a notice",
    )
    add(
        "--checkpoint-every",
        metavar="EVERY",
        help="also checkpoint inside epochs: every N steps (500), every duration of training "
        "(30s, 10min, 1h), both (500,10min), or only at epoch ends (epoch); "
        f"default {CHECKPOINT_EVERY} (epoch for TensorFlow across processes)",
    )
    add(
        "--keep-checkpoints",
        type=int,
        default=1,
        metavar="K",
        help="keep the newest K checkpoints (state.npz and state-EPOCH-STEP.npz); default 1",
    )
    add(
        "--folds",
        choices=("all",),
        help="adience: every fold in turn as the test split, into RUN/fold-K, with the mean ± "
        "std over folds (folds.json)",
    )
    add("--list", action="store_true", help="list models and datasets, then exit")
    _add_cluster_arguments(train)


def _add_study_arguments(study):
    _add_data_and_recipe_arguments(study, {})
    add = study.add_argument
    add("--seeds", type=int, help="seeds 0..N-1 per loss and backend (default 8, --quick 2)")
    add(
        "--folds",
        choices=("all",),
        help="adience: every loss and seed once per fold, paired by (seed, fold)",
    )
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
    add(
        "--benchmark",
        metavar="NAME",
        help="a paper benchmark's preset (data set, model, recipe, beta, image size...): CE, "
        "NLLR and CRL on it; flags given here override the preset; 'list' shows them",
    )
    _add_executor_arguments(study)


def _add_executor_arguments(study):
    """Where the study's runs train: one after another, or as Ray tasks."""
    add = study.add_argument_group(
        "executor", "ray: each run a Ray task (pip install 'keras-crl[ray]')"
    ).add_argument
    add("--executor", choices=("sequential", "ray"), default="sequential")
    add(
        "--threads-per-run",
        type=int,
        metavar="N",
        dest="threads",
        help="pin each run to N threads (saved in study.json; default: ray, --cpus-per-run; "
        "sequential, the frameworks' own)",
    )
    add("--cpus-per-run", type=float, default=1.0, metavar="N", help="ray: CPUs per run")
    add("--gpus-per-run", type=float, default=0.0, metavar="N", help="ray: GPUs per run")
    add(
        "--address",
        metavar="HOST:PORT",
        help="ray: join this cluster (default: start a local one on 127.0.0.1)",
    )


# Shown by `keras-crl --help`; tests/test_doc_commands.py checks each one.
EXAMPLES = """examples:
  keras-crl train --list                       models and data sets
  keras-crl train --dataset cifar100 --model resnet34 --backend jax
  keras-crl train --run-dir runs/r34 --resume  continue a run, on any backend
  keras-crl compare-backends --epochs 2        the same training on each backend
  keras-crl study --quick                      CRL against the usual losses

A command's flags: keras-crl COMMAND --help."""


def build_parser():
    """The `keras-crl` parser; `parser.commands` maps each command to its parser."""
    parser = argparse.ArgumentParser(
        prog="keras-crl",
        description="Competing Ratio Loss for Keras 3 on TensorFlow, PyTorch and JAX. "
        "With no command: CRL vs cross-entropy on the bundled digits data.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="the main job (also what no command runs)")
    _add_data_and_recipe_arguments(demo, DEMO)
    _add_run_arguments(demo)
    demo.add_argument("--backend", choices=BACKENDS, help="Keras backend (default: $KERAS_BACKEND)")
    demo.add_argument("--run-dir", default="runs/demo")

    _add_train_arguments(sub.add_parser("train", help="train one model into a run folder"))

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

    _add_study_arguments(
        sub.add_parser(
            "study",
            help="CRL vs CE, NLLR, label smoothing, focal loss and your own losses, over seeds "
            "(and backends, alpha x beta): report.md with plots",
            description="Trains every loss with every seed (default 8) on each backend (each in "
            "its own process) and writes report.md: test accuracy (best-on-validation weights) "
            "as mean ± std, paired differences to cross-entropy and of the authors' CRL to each "
            "other loss, training curves and time. On the bundled digits the defaults are 30 "
            "epochs, batch 64, lr 0.05. Rerun the same command to resume: finished runs are "
            "skipped.",
        )
    )
    parser.commands = dict(sub.choices)
    return parser


def given_flags(parser, command, argv):
    """The destinations of the flags `argv` sets itself, defaults left out."""
    sub = parser.commands[command]
    saved = [(action, action.default) for action in sub._actions]
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        return set(vars(sub.parse_args(argv[argv.index(command) + 1 :])))
    finally:
        for action, default in saved:
            action.default = default


def flag_of(parser, command, field):
    """The flag that sets `TrainConfig` field (or data set option) `field`, or `field`."""
    if field in FIELD_FLAGS:
        return FIELD_FLAGS[field]
    for action in parser.commands[command]._actions:
        if action.dest == field and action.option_strings:
            return action.option_strings[-1]
    return field
