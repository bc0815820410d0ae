"""What a study trains (`StudySettings`), its defaults, and `study.json`."""

import dataclasses
import json
import os
from pathlib import Path

from keras_crl.backends import check_backends
from keras_crl.config import DATASET_FOLDS
from keras_crl.config import TrainConfig
from keras_crl.config import check_config
from keras_crl.config import config_loss
from keras_crl.folds import fold_dir
from keras_crl.loss_factory import check_loss
from keras_crl.study.benchmarks import get_benchmark
from keras_crl.study.variants import COMPARED
from keras_crl.study.variants import Variant
from keras_crl.study.variants import parse_variant
from keras_crl.study.variants import sweep_variants
from keras_crl.study.variants import unique_variants

# Training settings a study compares losses under: the recipe and the data,
# never the loss or the seed. A rerun into the same folder must match them.
TRAINING_FIELDS = (
    "model",
    "dataset",
    "recipe",
    "epochs",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "schedule",
    "augment",
    "backbone_lr_scale",
    "validation_split",
    "data_dir",
    "dataset_options",
    "model_options",
    "limit",
    "jit",
    "deterministic",
    "precision",
)

# The bundled digits (1294 training images) with small_cnn: the demo's batch
# and learning rate, and 30 epochs (the paper's step schedule scaled to 15
# and 22): a run takes about 8 s on 2 CPU cores.
DIGITS_DEFAULTS = {"batch_size": 64, "learning_rate": 0.05, "epochs": 30}
# Paired differences to CE spread by about 1.2 pp (sample std) in the
# 5-seed study of 0.2.0. 8 seeds resolve 1 pp at spreads up to 1.19 pp
# (95 % interval half-width t_7 * std / sqrt(8) = 2.365 * 1.19 / 2.83 <= 1;
# at 1.2 it takes 9: stats.seeds_to_resolve), and 7 losses x 8 seeds x 3
# backends stay near 22 minutes on 2 cores.
FULL_SEEDS = 8
# --quick: a smoke run of the whole pipeline (14 short runs); two seeds
# are the fewest that give a spread.
QUICK = {"epochs": 8, "seeds": 2}


@dataclasses.dataclass
class StudySettings:
    """What a study trains.

    Args:
        training: `TrainConfig` fields shared by every run (see
            `TRAINING_FIELDS`).
        seeds: The seeds; every loss trains once per seed and backend.
        backends: Keras backends, each trained in its own process.
        variants: The losses of the main comparison (CE first).
        sweep: Also train the alpha x beta grid.
        quick: Whether `--quick` chose the defaults (reported).
        command: The command line, for the report.
        folds: The test folds every loss and seed trains once each
            (`--folds all`), or None: one run per loss and seed.
        benchmark: The `--benchmark` preset it started from, or `""`.
        threads: Threads per run (`backends.thread_env`), applied by both
            executors; `None` leaves the frameworks' own choice. A thread
            count changes torch's rounding, so runs compared bit for bit
            need the same one.
    """

    training: dict
    seeds: list
    backends: list
    variants: list
    sweep: bool = False
    quick: bool = False
    command: str = ""
    folds: list | None = None
    benchmark: str = ""
    threads: int | None = None

    def units(self):
        """The runs of one loss on one backend, `(seed, fold)` (fold None without folds);
        the study pairs losses on them."""
        return [(s, f) for s in self.seeds for f in (self.folds or [None])]

    def all_variants(self):
        """Every loss to train: the compared ones, then the sweep's others."""
        return unique_variants([*self.variants, *(sweep_variants() if self.sweep else [])])

    def to_json(self):
        return {
            **dataclasses.asdict(self),
            "variants": [dataclasses.asdict(v) for v in self.variants],
        }

    @classmethod
    def from_json(cls, obj):
        obj = dict(obj)
        obj["variants"] = [
            Variant(**{**v, "options": tuple(tuple(o) for o in v.get("options", ()))})
            for v in obj["variants"]
        ]
        return cls(**obj)


def resolve_settings(
    training,
    *,
    seeds=None,
    backends,
    extra=(),
    sweep=False,
    quick=False,
    out_dir="runs/study",
    folds=None,
    variants=None,
    benchmark="",
):
    """`StudySettings` from what the user chose; `None` means "the default".

    Explicit values win; then `--quick`'s settings (`QUICK`); then, on the
    bundled digits, `DIGITS_DEFAULTS`; then the recipe's own values.

    Args:
        training: `TrainConfig` fields shared by every run
            (`TRAINING_FIELDS`; missing ones take `TrainConfig`'s defaults,
            others such as loss, seed or run folder are ignored).
        seeds: Number of seeds (seeds `0..seeds-1`).
        backends: Backend names, or one comma-separated string.
        extra: More losses, as `parse_variant` strings (`"crl:0.5:0.5"`,
            `"mypkg.losses:PolyLoss:epsilon=1"`). Each is built and called
            on a tiny batch here, so a bad import path or argument fails
            before any run starts.
        sweep: Also train the alpha x beta grid.
        quick: The smoke-test defaults.
        out_dir: The study folder (for the command line in the report).
        folds: `"all"`: every run once per fold of the data set
            (`config.DATASET_FOLDS`).
        variants: The losses compared before `extra` (default `COMPARED`).
        benchmark: The `--benchmark` preset `training` comes from, for
            the command line in the report.

    Returns:
        A `StudySettings`.
    """
    unset = dataclasses.asdict(TrainConfig())
    training = {k: training.get(k, unset[k]) for k in TRAINING_FIELDS}
    defaults = dict(DIGITS_DEFAULTS) if training["dataset"] == "digits" else {}
    if quick:
        defaults["epochs"] = QUICK["epochs"]
    for key, value in defaults.items():
        if training[key] is None:
            training[key] = value
    if seeds is None:
        seeds = QUICK["seeds"] if quick else FULL_SEEDS
    if seeds < 1:
        raise ValueError(f"The number of seeds must be at least 1. Received: seeds={seeds}")
    extra = [parse_variant(e) for e in extra]
    for v in extra:
        check_loss(config_loss(TrainConfig(**v.train_fields())), v.spec)
    variants = unique_variants([*(COMPARED if variants is None else variants), *extra])
    backends = list(dict.fromkeys(check_backends(backends)))
    for v in unique_variants([*variants, *(sweep_variants() if sweep else [])]):
        check_config(TrainConfig(**training, **v.train_fields()), backends, folds=folds)
    settings = StudySettings(
        training=training,
        seeds=list(range(seeds)),
        backends=backends,
        variants=variants,
        sweep=bool(sweep),
        quick=bool(quick),
        folds=list(range(DATASET_FOLDS[training["dataset"]])) if folds else None,
        benchmark=benchmark,
    )
    settings.command = command_line(settings, out_dir)
    return settings


def command_line(settings, out_dir):
    """The `keras-crl study` command that trains `settings`, every choice spelled out.

    Written into the report: it stays exact if a default changes later.
    """
    tr = settings.training
    parts = ["keras-crl", "study"]
    if settings.benchmark:
        parts.append(f"--benchmark {settings.benchmark}")
    if settings.quick:
        parts.append("--quick")
    flags = [
        ("--dataset", tr["dataset"]),
        ("--model", tr["model"]),
        ("--recipe", tr["recipe"]),
        ("--epochs", tr["epochs"]),
        ("--batch-size", tr["batch_size"]),
        ("--lr", tr["learning_rate"]),
        ("--momentum", tr["momentum"]),
        ("--weight-decay", tr["weight_decay"]),
        ("--schedule", tr["schedule"]),
        ("--backbone-lr-scale", tr.get("backbone_lr_scale")),
        ("--weights", tr.get("model_options", {}).get("weights")),
        ("--limit", tr["limit"]),
        ("--data-dir", tr["data_dir"] or tr["dataset_options"].get("path")),
        ("--image-size", (tr["dataset_options"].get("image_size") or [None])[0]),
        ("--validation-split", tr["validation_split"] if tr["validation_split"] != 0.1 else None),
        ("--jit", {True: "on", False: "off"}.get(tr["jit"])),
        ("--precision", tr["precision"] if tr["precision"] != "float32" else None),
    ]
    parts += [
        f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
        for flag, value in flags
        if value is not None
    ]
    if tr["augment"] is False:
        parts.append("--no-augment")
    if tr.get("model_options", {}).get("batch_norm") is False:
        parts.append("--no-batch-norm")
    if settings.threads is not None:
        parts.append(f"--threads-per-run {settings.threads}")
    if tr.get("deterministic") is False:
        parts.append("--no-deterministic")
    if settings.seeds == list(range(len(settings.seeds))):
        parts.append(f"--seeds {len(settings.seeds)}")
    parts.append(f"--backends {','.join(settings.backends)}")
    # A benchmark's own losses come with --benchmark; other ones are --extra.
    base = get_benchmark(settings.benchmark).variants() if settings.benchmark else COMPARED
    for v in settings.variants:
        if v not in base:
            parts.append(f"--extra {v.spec}")
    if settings.sweep:
        parts.append("--sweep")
    if settings.folds:
        parts.append("--folds all")
    parts.append(f"--out-dir {out_dir}")
    return " ".join(parts)


def save_settings(settings, out_dir):
    """Writes `out_dir/study.json`, refusing to mix other training settings in.

    Raises:
        ValueError: `out_dir` holds a study trained with other settings.
    """
    out_dir = Path(out_dir)
    path = out_dir / "study.json"
    if path.exists():
        saved = json.loads(path.read_text())
        # A field added to TRAINING_FIELDS later reads as its default. The folds
        # too: a study with folds and one without cannot share runs.
        unset = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))
        new = json.loads(json.dumps(settings.training))
        old = {**{k: unset[k] for k in new}, **saved["training"], "folds": saved.get("folds")}
        new["folds"] = json.loads(json.dumps(settings.folds))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise ValueError(
                f"{out_dir} holds a study trained with other settings ({details}); its "
                "finished runs would be mixed with new ones. Use another --out-dir."
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(settings.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def load_settings(out_dir):
    return StudySettings.from_json(json.loads((Path(out_dir) / "study.json").read_text()))


def run_dir(out_dir, backend, v, seed, fold=None):
    """Where one run lives: `out_dir/runs/<backend>/<variant>/seed<k>` (`/fold-<f>`)."""
    folder = Path(out_dir) / "runs" / backend / v.name / f"seed{seed}"
    return folder if fold is None else fold_dir(folder, fold)
