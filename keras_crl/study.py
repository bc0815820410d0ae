"""Does CRL train better classifiers than cross-entropy? A repeatable study.

    keras-crl study [--quick] [--sweep] [--backends tensorflow,torch,jax]

Every (backend, loss, seed) is one `keras_crl.train.train` run into
`out_dir/runs/<backend>/<loss>/seed<k>`; the test accuracy of a run is the
one of its best-on-validation weights, on the held-out test split. A seed
fixes the initial weights, the validation split, the data order and the
augmentation, so two runs with the same seed differ only in their loss: the
comparison against cross-entropy is paired, seed by seed.

Each backend trains in its own process (`keras-crl study --worker` with
`KERAS_BACKEND` set), all of that backend's runs one after the other; the
backend the command already runs under trains in the command's own process.
The settings live in `out_dir/study.json`, the single source the worker
processes read and the guard that stops a rerun from mixing settings.

Resuming: a run whose `metrics.json` exists is skipped, a run with only a
`state.npz` continues from its last finished epoch (`train(resume=True)`),
so an interrupted study finishes by running the same command again, and more
seeds, losses or backends can be added to a finished one.

Output, next to `runs/`: `report.md` (tables and findings), `accuracy.png`,
`curves.png`, `sweep.png` (with `--sweep`) and `results.json` (every run's
numbers and the aggregates).
"""

import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BACKENDS = ("tensorflow", "torch", "jax")

# The sweep grid of the issue: alpha x beta.
SWEEP_ALPHAS = (0.0, 0.5, 1.0)
SWEEP_BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)

# Training settings a study compares losses under: the recipe and the data,
# never the loss or the seed. A rerun into the same folder must match them.
TRAINING_FIELDS = (
    "model", "dataset", "recipe", "epochs", "batch_size", "learning_rate", "momentum",
    "weight_decay", "schedule", "augment", "validation_split", "data_dir",
    "dataset_options", "limit", "jit", "precision",
)

# The bundled digits (1294 training images) with small_cnn: the demo's batch
# and learning rate, and 30 epochs (the paper's step schedule scaled to 15
# and 22): 20 runs on one backend take about four minutes on 2 CPU cores.
DIGITS_DEFAULTS = {"batch_size": 64, "learning_rate": 0.05, "epochs": 30}
FULL_SEEDS = 5
# --quick: a smoke run of the whole pipeline in under two minutes; two seeds
# are the fewest that give a spread.
QUICK = {"epochs": 8, "seeds": 2}


# --------------------------------------------------------------------------
# Loss variants.


@dataclasses.dataclass(frozen=True)
class Variant:
    """One loss of the study: `"ce"`, `"nllr"` or `"crl"` with its alpha, beta.

    Use `variant()` to build one: it maps CRL settings that are another loss
    exactly (`beta = 0` is cross-entropy, `alpha = 0, beta = 1` is NLLR) to
    that loss, so the sweep never trains the same loss twice.
    """

    loss: str
    alpha: float = 0.0
    beta: float = 0.0

    @property
    def name(self):
        """The run folder's name, e.g. `crl-a0-b0.25`."""
        if self.loss == "crl":
            return f"crl-a{self.alpha:g}-b{self.beta:g}"
        return self.loss

    @property
    def label(self):
        if self.loss == "crl":
            return f"CRL(α={self.alpha:g}, β={self.beta:g})"
        return {"ce": "CE", "nllr": "NLLR"}[self.loss]


def variant(loss, alpha=0.0, beta=0.0):
    """The canonical `Variant` of a loss and its CRL parameters.

    Args:
        loss: `"ce"`, `"nllr"` or `"crl"`.
        alpha: CRL's alpha (>= 0); ignored by `"ce"` and `"nllr"`.
        beta: CRL's beta (>= 0); ignored by `"ce"` and `"nllr"`.

    Returns:
        A `Variant`. `crl` with `beta = 0` is `ce` (the competing term is
        multiplied by zero), `crl` with `alpha = 0, beta = 1` is `nllr`.

    Example:

    >>> variant("crl", 0.5, 0.0).name
    'ce'
    """
    if loss not in ("ce", "nllr", "crl"):
        raise ValueError(f"Unknown loss {loss!r}. Valid losses: ce, nllr, crl.")
    alpha, beta = float(alpha), float(beta)
    if loss == "crl":
        if alpha < 0 or beta < 0 or not (math.isfinite(alpha) and math.isfinite(beta)):
            raise ValueError(f"CRL needs finite alpha >= 0 and beta >= 0; got {alpha}, {beta}.")
        if beta == 0:
            return Variant("ce", 0.0, 0.0)
        if alpha == 0 and beta == 1:
            return Variant("nllr", 0.0, 1.0)
        return Variant("crl", alpha, beta)
    return Variant(loss, 0.0, 1.0 if loss == "nllr" else 0.0)


BASELINE = variant("ce")
# CE, NLLR, the authors' release (alpha 0, beta 0.25) and a loss that stays
# positive (alpha 1, beta 1).
COMPARED = (BASELINE, variant("nllr"), variant("crl", 0, 0.25), variant("crl", 1, 1))


def parse_variant(text):
    """`"crl:ALPHA:BETA"`, `"ce"` or `"nllr"` (an `--extra` value) as a `Variant`."""
    parts = text.strip().lower().split(":")
    try:
        if parts[0] == "crl" and len(parts) == 3:
            return variant("crl", float(parts[1]), float(parts[2]))
        if parts[0] in ("ce", "nllr") and len(parts) == 1:
            return variant(parts[0])
    except ValueError as error:
        raise ValueError(f"Bad loss {text!r}: {error}") from None
    raise ValueError(f"Bad loss {text!r}: write crl:ALPHA:BETA (e.g. crl:0.5:0.5), ce or nllr.")


def sweep_variants():
    """The alpha x beta grid, canonical (its beta = 0 column is CE)."""
    return [variant("crl", a, b) for a in SWEEP_ALPHAS for b in SWEEP_BETAS]


def _unique(variants):
    seen = {}
    for v in variants:
        seen.setdefault(v.name, v)
    return list(seen.values())


# --------------------------------------------------------------------------
# Settings.


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
    """

    training: dict
    seeds: list
    backends: list
    variants: list
    sweep: bool = False
    quick: bool = False
    command: str = ""

    def all_variants(self):
        """Every loss to train: the compared ones, then the sweep's others."""
        return _unique([*self.variants, *(sweep_variants() if self.sweep else [])])

    def to_json(self):
        return {**dataclasses.asdict(self),
                "variants": [dataclasses.asdict(v) for v in self.variants]}

    @classmethod
    def from_json(cls, obj):
        obj = dict(obj)
        obj["variants"] = [Variant(**v) for v in obj["variants"]]
        return cls(**obj)


def settings_from_args(args, current_backend):
    """Resolves `keras-crl study` arguments into `StudySettings`.

    Explicit flags win; then `--quick`'s settings; then, on the bundled
    digits, `DIGITS_DEFAULTS`; then the recipe's own values.
    """
    chosen = {
        "epochs": args.epochs, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
    }
    defaults = dict(DIGITS_DEFAULTS) if args.dataset == "digits" else {}
    if args.quick:
        defaults["epochs"] = QUICK["epochs"]
    for key, value in defaults.items():
        if chosen[key] is None:
            chosen[key] = value
    seeds = args.seeds if args.seeds is not None else (QUICK["seeds"] if args.quick else FULL_SEEDS)
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}.")

    options = {}
    if args.image_size:
        options["image_size"] = [args.image_size, args.image_size]
    if args.dataset == "folder":
        if not args.data_dir:
            raise ValueError("--dataset folder needs --data-dir PATH (one sub-folder per class)")
        options["path"] = args.data_dir
    training = {
        "model": args.model,
        "dataset": args.dataset,
        "recipe": args.recipe,
        **chosen,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "schedule": args.schedule,
        "augment": args.augment,
        "validation_split": args.validation_split,
        "data_dir": None if args.dataset == "folder" else args.data_dir,
        "dataset_options": options,
        "limit": args.limit,
        "jit": {"auto": "auto", "on": True, "off": False}[args.jit],
        "precision": args.precision,
    }

    backends = [b.strip() for b in (args.backends or current_backend).split(",") if b.strip()]
    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown or not backends:
        raise ValueError(f"Unknown backends {unknown}. Valid backends: {', '.join(BACKENDS)}.")
    variants = _unique([*COMPARED, *(parse_variant(e) for e in args.extra or [])])
    settings = StudySettings(
        training=training,
        seeds=list(range(seeds)),
        backends=list(dict.fromkeys(backends)),
        variants=variants,
        sweep=bool(args.sweep),
        quick=bool(args.quick),
    )
    settings.command = command_line(settings, args.out_dir)
    return settings


def command_line(settings, out_dir):
    """The `keras-crl study` command that trains `settings`, every choice spelled out.

    Written into the report: it stays exact if a default changes later.
    """
    tr = settings.training
    parts = ["keras-crl", "study"]
    if settings.quick:
        parts.append("--quick")
    flags = [
        ("--dataset", tr["dataset"]), ("--model", tr["model"]), ("--recipe", tr["recipe"]),
        ("--epochs", tr["epochs"]), ("--batch-size", tr["batch_size"]),
        ("--lr", tr["learning_rate"]), ("--momentum", tr["momentum"]),
        ("--weight-decay", tr["weight_decay"]), ("--schedule", tr["schedule"]),
        ("--limit", tr["limit"]),
        ("--data-dir", tr["data_dir"] or tr["dataset_options"].get("path")),
        ("--image-size", (tr["dataset_options"].get("image_size") or [None])[0]),
        ("--validation-split", tr["validation_split"] if tr["validation_split"] != 0.1 else None),
        ("--jit", {True: "on", False: "off"}.get(tr["jit"])),
        ("--precision", tr["precision"] if tr["precision"] != "float32" else None),
    ]
    parts += [f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
              for flag, value in flags if value is not None]
    if tr["augment"] is False:
        parts.append("--no-augment")
    if settings.seeds == list(range(len(settings.seeds))):
        parts.append(f"--seeds {len(settings.seeds)}")
    parts.append(f"--backends {','.join(settings.backends)}")
    for v in settings.variants:
        if v not in COMPARED:
            spec = f"crl:{v.alpha:g}:{v.beta:g}" if v.loss == "crl" else v.loss
            parts.append(f"--extra {spec}")
    if settings.sweep:
        parts.append("--sweep")
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
        old = json.loads(path.read_text())["training"]
        new = json.loads(json.dumps(settings.training))
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


def run_dir(out_dir, backend, v, seed):
    """Where one run lives: `out_dir/runs/<backend>/<variant>/seed<k>`."""
    return Path(out_dir) / "runs" / backend / v.name / f"seed{seed}"


# --------------------------------------------------------------------------
# Running.


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
        if backend == current_backend:
            train_backend(out_dir, echo=echo)
        else:
            _train_in_subprocess(out_dir, backend, echo)
    records = collect(settings, out_dir)
    return write_report(settings, records, out_dir)


def _train_in_subprocess(out_dir, backend, echo):
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Every run builds and compiles a fresh model; JAX's persistent cache lets
    # the seeds of one loss reuse the first seed's compiled step.
    env.setdefault("JAX_COMPILATION_CACHE_DIR",
                   os.path.join(tempfile.gettempdir(), "keras_crl_jax_cache"))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    logs = Path(out_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{backend}.stderr.log"
    echo(f"[{backend}] own process; its warnings go to {log_path}", flush=True)
    command = [sys.executable, "-m", "keras_crl.cli", "study", "--worker",
               "--out-dir", str(out_dir)]
    with open(log_path, "w") as stderr:
        # stdout is inherited: the worker's progress lines show as they come.
        result = subprocess.run(command, env=env, stderr=stderr)
    if result.returncode:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"The {backend} runs failed (exit {result.returncode}):\n{tail}")


def train_backend(out_dir, echo=print):
    """Trains this process's backend's missing runs of the study in `out_dir`.

    What `keras-crl study --worker` runs. A run whose `metrics.json` exists
    is checked against the settings and skipped; a partial one resumes from
    its `state.npz`. A run whose loss turns NaN is recorded as failed
    (`failed.json`) and not retried: it would fail the same way again.

    Returns:
        The number of runs trained (or resumed) by this call.
    """
    import keras

    from keras_crl import train as train_lib

    settings = load_settings(out_dir)
    backend = keras.backend.backend()
    trained = 0
    for v in settings.all_variants():
        for seed in settings.seeds:
            folder = run_dir(out_dir, backend, v, seed)
            config = train_lib.TrainConfig(
                **settings.training, loss=v.loss, alpha=v.alpha, beta=v.beta, seed=seed,
                run_dir=str(folder), resume=True, verbose=0,
            )
            tag = f"[{backend}] {v.label:<18} seed {seed}"
            if (folder / "metrics.json").exists():
                _check_finished(folder, config, backend)
                echo(f"{tag}: done before, skipped", flush=True)
                continue
            if (folder / "failed.json").exists():
                echo(f"{tag}: failed before (NaN loss), skipped", flush=True)
                continue
            resumed = (folder / "state.npz").exists()
            start = time.perf_counter()
            try:
                metrics = train_lib.train(config)
            except FloatingPointError as error:
                train_lib._write_json(folder / "failed.json", {"error": str(error)})
                echo(f"{tag}: FAILED: {error}", flush=True)
                continue
            finally:
                # Each run builds a new model; free the previous graph.
                keras.backend.clear_session()
            wall = time.perf_counter() - start
            train_lib._write_json(folder / "study_time.json",
                                  {"wall_seconds": wall, "resumed": resumed})
            trained += 1
            echo(f"{tag}: test {100 * metrics['test_accuracy']:.2f} %  "
                 f"({wall:.1f} s{', resumed' if resumed else ''})", flush=True)
    return trained


def _check_finished(folder, config, backend):
    """A finished run must be the run the study asks for."""
    metrics = json.loads((folder / "metrics.json").read_text())
    expected = {"backend": backend, "loss": config.loss, "alpha": config.alpha,
                "beta": config.beta, "seed": config.seed,
                "epochs": config.resolved_recipe().epochs}
    wrong = {k: metrics.get(k) for k, v in expected.items() if metrics.get(k) != v}
    if wrong:
        raise ValueError(f"{folder}/metrics.json does not belong to this study: {wrong} "
                         f"(expected {expected}).")


def collect(settings, out_dir, require_all=True):
    """Every run's numbers and training curves, read from the run folders.

    Returns:
        A list of dicts, one per run: backend, variant (name), label, loss,
        alpha, beta, seed, failed, test_accuracy, best_epoch,
        best_val_accuracy, final_train_loss, seconds_per_epoch, wall_seconds,
        run (the folder relative to `out_dir`), config (dataset sizes and
        recipe of the run) and log (`log.csv` columns).

    Raises:
        FileNotFoundError: A run has neither `metrics.json` nor `failed.json`
            (and `require_all`).
    """
    from keras_crl.train import read_log

    out_dir = Path(out_dir)
    records, missing = [], []
    for backend in settings.backends:
        for v in settings.all_variants():
            for seed in settings.seeds:
                folder = run_dir(out_dir, backend, v, seed)
                record = {"backend": backend, "variant": v.name, "label": v.label,
                          "loss": v.loss, "alpha": v.alpha, "beta": v.beta, "seed": seed,
                          "run": str(folder.relative_to(out_dir))}
                if (folder / "metrics.json").exists():
                    metrics = json.loads((folder / "metrics.json").read_text())
                    record.update(failed=False, **{k: metrics.get(k) for k in (
                        "test_accuracy", "test_images", "best_epoch", "best_val_accuracy",
                        "final_train_loss", "seconds_per_epoch")})
                elif (folder / "failed.json").exists():
                    record.update(failed=True, test_accuracy=None,
                                  error=json.loads((folder / "failed.json").read_text())["error"])
                else:
                    missing.append(str(folder))
                    continue
                timing = folder / "study_time.json"
                record["wall_seconds"] = (
                    json.loads(timing.read_text())["wall_seconds"] if timing.exists() else None)
                if (folder / "config.json").exists():
                    config = json.loads((folder / "config.json").read_text())
                    record["config"] = {
                        k: config[k] for k in ("dataset", "recipe", "milestones_used")}
                record["log"] = read_log(folder / "log.csv")
                records.append(record)
    if missing and require_all:
        raise FileNotFoundError("Runs without results: " + ", ".join(missing))
    return records


# --------------------------------------------------------------------------
# Statistics: plain and conservative; seeds are few.


def describe(values):
    """n, mean, sample std (n - 1), min and max of `values`."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    return {
        "n": n,
        "mean": float(v.mean()) if n else None,
        "std": float(v.std(ddof=1)) if n > 1 else None,
        "min": float(v.min()) if n else None,
        "max": float(v.max()) if n else None,
    }


def sign_test(wins, losses):
    """Two-sided exact sign test p-value; ties are left out."""
    m = wins + losses
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(wins, losses) + 1)) / 2.0**m
    return min(1.0, 2.0 * tail)


def paired(differences, confidence=0.95):
    """A paired comparison from per-seed differences (variant minus baseline).

    Returns:
        A dict: n, mean, std (sample), t (paired t statistic), p_t (two-sided),
        ci (the `confidence` interval of the mean difference, from the t
        distribution), wins / ties / losses (seeds where the variant is
        above / equal to / below the baseline) and p_sign (exact two-sided
        sign test). t, p_t and ci are None with fewer than two seeds; t and
        p_t also when every seed moved by exactly the same amount, where the
        t test has no spread to measure (with accuracies on a few hundred
        test images and two or three seeds, that happens by chance).

    Example:

    >>> paired([1.0, 2.0, 3.0])["t"]
    3.4641016151377544
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    n = len(d)
    out = describe(d)
    out.update(wins=int((d > 0).sum()), ties=int((d == 0).sum()), losses=int((d < 0).sum()))
    out["p_sign"] = sign_test(out["wins"], out["losses"])
    out.update(t=None, p_t=None, ci=None)
    if n >= 2:
        se = out["std"] / math.sqrt(n)
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
        if se > 0:
            out["t"] = out["mean"] / se
            out["p_t"] = float(2 * stats.t.sf(abs(out["t"]), n - 1))
            out["ci"] = [out["mean"] - half, out["mean"] + half]
    return out


def holm(pvalues):
    """Holm's step-down adjustment; `None`s stay `None`.

    Controls the chance of any false claim over the whole family of
    comparisons, whatever their dependence (the backends share seeds).
    """
    indexed = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(indexed)
    adjusted = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def analyse(settings, records):
    """Aggregates per backend and loss, paired comparisons against CE.

    Accuracies are in percent, differences in percentage points. Paired
    differences use the seeds where both runs finished.

    Returns:
        A dict with `summary` (one row per backend and loss),
        `comparisons` (each compared loss vs CE, per backend, with Holm's
        adjustment over all of them), `sweep` (the grid, when swept, with its
        own Holm family) and `backend_agreement`.
    """
    accuracy = {}
    for r in records:
        if not r["failed"]:
            accuracy[(r["backend"], r["variant"], r["seed"])] = _percent(r)
    failed = {}
    for r in records:
        if r["failed"]:
            failed.setdefault((r["backend"], r["variant"]), []).append(r["seed"])

    def values(backend, v):
        return [accuracy[(backend, v.name, s)] for s in settings.seeds
                if (backend, v.name, s) in accuracy]

    def versus_ce(backend, v):
        seeds = [s for s in settings.seeds if (backend, v.name, s) in accuracy
                 and (backend, BASELINE.name, s) in accuracy]
        result = paired([accuracy[(backend, v.name, s)] - accuracy[(backend, BASELINE.name, s)]
                         for s in seeds])
        return {"backend": backend, "variant": v.name, "label": v.label, **result}

    def by_run(rows, key):
        return [r[key] for r in rows if r.get(key) is not None]

    summary = []
    for backend in settings.backends:
        for v in settings.all_variants():
            runs = [r for r in records if r["backend"] == backend and r["variant"] == v.name
                    and not r["failed"]]
            summary.append({
                "backend": backend, "variant": v.name, "label": v.label,
                "loss": v.loss, "alpha": v.alpha, "beta": v.beta,
                "compared": v in settings.variants,
                **describe(values(backend, v)),
                "failed_seeds": failed.get((backend, v.name), []),
                "mean_best_epoch": _mean(by_run(runs, "best_epoch"), offset=1),
                "seconds_per_epoch": _mean(by_run(runs, "seconds_per_epoch")),
                "wall_seconds_per_run": _mean(by_run(runs, "wall_seconds")),
                "wall_seconds_total": float(sum(by_run(runs, "wall_seconds"))),
                "runs_timed": len(by_run(runs, "wall_seconds")),
            })

    comparisons = [versus_ce(b, v) for b in settings.backends for v in settings.variants
                   if v != BASELINE]
    if len(settings.backends) > 1:
        # The seed is the unit of replication; averaging a seed's runs over
        # the backends damps their rounding-driven divergence.
        for v in settings.variants:
            complete = [s for s in settings.seeds if all(
                (b, n, s) in accuracy for b in settings.backends for n in (v.name, BASELINE.name))]
            means = [np.mean([accuracy[(b, v.name, s)] for b in settings.backends])
                     for s in complete]
            summary.append({"backend": POOLED, "variant": v.name, "label": v.label,
                            "loss": v.loss, "alpha": v.alpha, "beta": v.beta,
                            "compared": True, **describe(means), "failed_seeds": []})
            if v != BASELINE:
                ce = [np.mean([accuracy[(b, BASELINE.name, s)] for b in settings.backends])
                      for s in complete]
                comparisons.append({"backend": POOLED, "variant": v.name, "label": v.label,
                                    **paired(np.subtract(means, ce))})
    for row, p in zip(comparisons, holm([c["p_t"] for c in comparisons])):
        row["p_holm"] = p

    sweep = []
    if settings.sweep:
        for backend in settings.backends:
            for a in SWEEP_ALPHAS:
                for b in SWEEP_BETAS:
                    v = variant("crl", a, b)
                    sweep.append({
                        "backend": backend, "alpha": a, "beta": b, "variant": v.name,
                        "accuracy": describe(values(backend, v)),
                        # The beta = 0 column is CE itself.
                        "versus_ce": versus_ce(backend, v) if v != BASELINE else None,
                    })
        tested = [r for r in sweep if r["versus_ce"] is not None]
        for row, p in zip(tested, holm([r["versus_ce"]["p_t"] for r in tested])):
            row["versus_ce"]["p_holm"] = p

    return {
        "summary": summary,
        "comparisons": comparisons,
        "sweep": sweep,
        "backend_agreement": _backend_agreement(settings, accuracy),
    }


def _percent(record):
    """Test accuracy in percent, snapped to whole test images.

    Keras averages in float32; snapping makes equal counts compare equal, so
    ties and paired differences are exact.
    """
    accuracy = 100.0 * record["test_accuracy"]
    images = record.get("test_images")
    if images:
        accuracy = 100.0 * round(record["test_accuracy"] * images) / images
    return accuracy


def _mean(values, offset=0):
    return float(np.mean(values)) + offset if values else None


# The backend column of the rows averaged over backends, seed by seed.
POOLED = "all (seed means)"


def _backend_agreement(settings, accuracy):
    """How far the backends' runs of the same loss and seed are apart."""
    if len(settings.backends) < 2:
        return None
    pairs, same, spread = 0, 0, 0.0
    for v in settings.all_variants():
        for s in settings.seeds:
            found = [accuracy.get((b, v.name, s)) for b in settings.backends]
            if None in found:
                continue
            pairs += 1
            same += max(found) == min(found)
            spread = max(spread, max(found) - min(found))
    return {"runs_compared": pairs, "identical_test_accuracy": same, "max_difference": spread}


# --------------------------------------------------------------------------
# The report.


def write_report(settings, records, out_dir):
    """Writes `report.md`, `results.json` and the plots into `out_dir`.

    Args:
        settings: The `StudySettings`.
        records: `collect` output (or records of the same form).
        out_dir: The study folder.

    Returns:
        `analyse`'s aggregates (as written to `results.json`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = analyse(settings, records)
    plots = [_plot_accuracy(settings, records, results, out_dir),
             _plot_curves(settings, records, out_dir),
             _plot_sweep(settings, results, out_dir) if settings.sweep else None]
    (out_dir / "report.md").write_text(_markdown(settings, records, results, plots))
    runs = [{k: v for k, v in r.items() if k not in ("log", "config")} for r in records]
    payload = {"settings": settings.to_json(), "runs": runs, **results}
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(_finite(payload), indent=1) + "\n")
    os.replace(tmp, out_dir / "results.json")
    return results


def _finite(obj):
    """JSON has no infinity: a t statistic of +-inf becomes a string."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _pct(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def _signed(x, digits=2):
    return "-" if x is None else f"{x:+.{digits}f}"


def _p(p):
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _t(t):
    if t is None:
        return "-"
    return f"{t:+.2f}" if math.isfinite(t) else ("+inf" if t > 0 else "-inf")


def main_table(results):
    """The test-accuracy table of the compared losses (markdown)."""
    lines = ["| backend | loss | seeds | test accuracy, mean ± std (%) | min – max (%) "
             "| paired Δ vs CE (pp), mean ± std | 95 % CI of Δ (pp) "
             "| seeds above / tied / below CE | paired t (p) | p (Holm) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    comparisons = {(c["backend"], c["variant"]): c for c in results["comparisons"]}
    for row in results["summary"]:
        if not row["compared"]:
            continue
        c = comparisons.get((row["backend"], row["variant"]))
        failed = f" ({len(row['failed_seeds'])} failed)" if row["failed_seeds"] else ""
        if c is None:
            delta = "(baseline)" if row["variant"] == BASELINE.name else "-"
            ci = counts = pt = ph = ""
        else:
            delta = f"{_signed(c['mean'])} ± {_pct(c['std'])}"
            ci = f"[{_signed(c['ci'][0])}, {_signed(c['ci'][1])}]" if c["ci"] else "-"
            counts = f"{c['wins']} / {c['ties']} / {c['losses']}"
            pt = f"{_t(c['t'])} ({_p(c['p_t'])})" if c["t"] is not None else "-"
            ph = _p(c["p_holm"])
        lines.append(
            f"| {row['backend']} | {row['label']} | {row['n']}{failed} "
            f"| {_pct(row['mean'])} ± {_pct(row['std'])} | {_pct(row['min'])} – {_pct(row['max'])} "
            f"| {delta} | {ci} | {counts} | {pt} | {ph} |"
        )
    return "\n".join(lines)


def findings(settings, results, test_images):
    """Plain sentences on what the numbers support, and what they do not."""
    lines = []
    comparisons = results["comparisons"]
    n = len(settings.seeds)
    means = [r["mean"] for r in results["summary"] if r["mean"] is not None]
    if test_images and means:
        accuracy = float(np.clip(np.mean(means) / 100.0, 0.0, 1.0))
        binomial = 100.0 * math.sqrt(accuracy * (1.0 - accuracy) / test_images)
        lines.append(
            f"The test split has {test_images} images: one image is {100.0 / test_images:.2f} pp, "
            f"and at {100 * accuracy:.1f} % accuracy the test sample's own standard error is "
            f"about {binomial:.1f} pp. Every run is scored on these same images, so the paired "
            "seed-to-seed comparisons below do not include that error: they say whether a "
            "difference is larger than training noise on this test set, not on new images."
        )
    widths = [(c["ci"][1] - c["ci"][0]) / 2 for c in comparisons if c.get("ci")]
    if widths:
        lines.append(
            f"With {n} seeds the 95 % confidence intervals of the paired differences have "
            f"half-widths of {min(widths):.2f} to {max(widths):.2f} pp: smaller true "
            "differences cannot be told from seed noise here."
        )
    if n < 6:
        lines.append(
            f"With {n} seeds a sign test cannot reach p < 0.05 (its smallest two-sided p is "
            f"{sign_test(n, 0):.3f}); the seed counts are descriptive."
        )
    significant = [c for c in comparisons if c.get("p_holm") is not None and c["p_holm"] < 0.05]
    if n < 3:
        # Two seeds give a t test with one degree of freedom, and the
        # differences come in whole test images: near-equal differences
        # produce tiny p-values by accident.
        lines.append(f"With {n} seed(s) no claim is made either way: the numbers are a smoke "
                     "test of the pipeline, not evidence.")
        significant, comparisons = [], []
    untestable = [c for c in results["comparisons"] if c["n"] >= 2 and c["p_t"] is None]
    if untestable and n >= 3:
        lines.append("No t test for " + ", ".join(f"{c['label']} on {c['backend']}"
                                                  for c in untestable)
                     + ": every seed moved by the same amount, so there is no spread to "
                     "measure; read its seed counts.")
    if comparisons:
        if significant:
            for c in significant:
                direction = "above" if c["mean"] > 0 else "below"
                lines.append(
                    f"**{c['label']} on {c['backend']}** is {direction} CE by "
                    f"{abs(c['mean']):.2f} pp "
                    f"(95 % CI [{_signed(c['ci'][0])}, {_signed(c['ci'][1])}], Holm-adjusted "
                    f"p = {_p(c['p_holm'])}, {c['wins']} of {c['n']} seeds above CE)."
                )
        else:
            lines.append(
                f"**No compared loss differs from CE beyond seed-to-seed noise**: no paired t test "
                f"of the {len(comparisons)} comparisons has a Holm-adjusted p below 0.05."
            )
        raw = [c for c in comparisons if c.get("p_t") is not None and c["p_t"] < 0.05
               and c not in significant]
        if raw:
            names = ", ".join(f"{c['label']} on {c['backend']} (p = {_p(c['p_t'])})" for c in raw)
            lines.append(f"Unadjusted p < 0.05 but not after correcting for the "
                         f"{len(comparisons)} comparisons: {names}. Treat as not shown.")
    agreement = results.get("backend_agreement")
    if agreement:
        same, total = agreement["identical_test_accuracy"], agreement["runs_compared"]
        text = (
            "The backends are not independent replications: the same seed starts from the same "
            f"weights on the same batches everywhere. {same} of {total} runs gave the same test "
            "accuracy on all backends (largest difference "
            f"{agreement['max_difference']:.2f} pp)"
        )
        if same == total:
            text += ", so agreement across backends confirms the implementation, not the effect."
        else:
            text += (": float32 rounding differs between the backends and SGD amplifies it "
                     "during training. Runs that share a seed still share their start, "
                     "validation split and batches, so they may be correlated and are not "
                     f"counted as extra seeds: the `{POOLED}` rows average each seed's runs over "
                     "the backends and test those per-seed means (n = seeds).")
        lines.append(text)
    if settings.sweep and results["sweep"]:
        for backend in settings.backends:
            cells = [r for r in results["sweep"] if r["backend"] == backend
                     and r["accuracy"]["mean"] is not None]
            if not cells:
                continue
            best = max(cells, key=lambda r: r["accuracy"]["mean"])
            worst = min(cells, key=lambda r: r["accuracy"]["mean"])
            sig = [r for r in cells if r["versus_ce"] and r["versus_ce"].get("p_holm") is not None
                   and r["versus_ce"]["p_holm"] < 0.05]
            text = (
                f"Sweep on {backend}: cell means range from {worst['accuracy']['mean']:.2f} % "
                f"(α={worst['alpha']:g}, β={worst['beta']:g}) to {best['accuracy']['mean']:.2f} % "
                f"(α={best['alpha']:g}, β={best['beta']:g}), a spread of "
                f"{best['accuracy']['mean'] - worst['accuracy']['mean']:.2f} pp; "
            )
            if sig:
                text += "cells that differ from CE after Holm correction: " + ", ".join(
                    f"α={r['alpha']:g} β={r['beta']:g} ({_signed(r['versus_ce']['mean'])} pp)"
                    for r in sig) + "."
            else:
                text += ("no cell differs from CE after Holm correction over the "
                         f"{sum(1 for r in cells if r['versus_ce'])} CRL cells.")
            lines.append(text)
    return lines


def _markdown(settings, records, results, plots):
    import keras

    from keras_crl import __version__

    first = next((r for r in records if r.get("config")), None)
    tr = settings.training
    out = ["# Competing Ratio Loss vs cross-entropy: study report", ""]
    out += [f"Command: `{settings.command}`", ""]
    out += [f"Generated {time.strftime('%Y-%m-%d %H:%M')} by keras-crl {__version__}, Keras "
            f"{keras.__version__}, Python {platform.python_version()}, on {platform.machine()} "
            f"with {os.cpu_count()} CPU cores.", ""]
    out += ["The paper (Zhang et al., Neurocomputing 2020) reports that CRL trains better "
            "classifiers than cross-entropy (CE) and NLLR, and that alpha and beta matter "
            "(ResNet-34 on CIFAR-100: 72.01 % with β = 0.25, 70.61 % with β = 0.5). This study "
            "trains the same network with each loss under one recipe and compares them seed by "
            "seed.", ""]
    out += ["## Set-up", ""]
    dataset = first["config"]["dataset"] if first else {}
    recipe = first["config"]["recipe"] if first else {}
    if dataset:
        out.append(f"- Data: `{tr['dataset']}`, {dataset['num_classes']} classes, "
                   f"input {tuple(dataset['input_shape'])}; {dataset['train']} training, "
                   f"{dataset['val']} validation and {dataset['test']} test images.")
    out.append(f"- Model: `{tr['model']}`.")
    if recipe:
        milestones = first["config"]["milestones_used"]
        schedule = recipe["schedule"] + (f" (×{recipe['gamma']:g} at epochs {milestones})"
                                         if recipe["schedule"] == "step" else "")
        out.append(
            f"- Recipe `{recipe['name']}`: {recipe['epochs']} epochs, "
            f"batch {recipe['batch_size']}, "
            f"SGD lr {recipe['learning_rate']:g}, momentum {recipe['momentum']:g}, weight decay "
            f"{recipe['weight_decay']:g} (coupled, as PyTorch), schedule {schedule}, augmentation "
            f"{'on' if recipe['augment'] else 'off'}. The same recipe for every loss: the claim "
            "tested is \"swap the loss, keep the recipe\"; no per-loss tuning.")
    out.append(f"- Backends: {', '.join(settings.backends)}; seeds {_seed_text(settings.seeds)} "
               "for every backend and loss. A seed fixes the initial weights, the validation "
               "split, the data order and the augmentation; runs with the same seed differ "
               "only in their loss.")
    out.append("- Reported accuracy: top-1 on the test split, of the weights with the best "
               "validation accuracy (`best.weights.h5`). Std is the sample std over seeds "
               "(n - 1). Δ is the per-seed difference to CE on the same backend, in percentage "
               "points (pp); its 95 % CI and p come from a paired t test, and p (Holm) is "
               "adjusted over all comparisons in the table.")
    out.append("- Losses: CE = CRL with β = 0; NLLR = CRL with α = 0, β = 1; "
               "CRL(α, β) = -log p_y + β log(α + 1 - p_y).")
    out.append("")
    out += ["## Test accuracy and paired comparison against CE", "", main_table(results), ""]
    failures = [r for r in records if r["failed"]]
    if failures:
        out += ["Failed runs (loss became NaN; excluded from the means): " + ", ".join(
            f"{r['backend']} {r['label']} seed {r['seed']}" for r in failures) + ".", ""]
    test_images = next((r.get("test_images") for r in records if r.get("test_images")), None)
    out += ["## What the numbers support", ""]
    out += [f"- {line}" for line in findings(settings, results, test_images)] + [""]
    if plots[0]:
        out += [f"![Test accuracy per seed and paired differences]({plots[0]})", "",
                "Top: each dot one seed, bar mean ± std. Bottom: per-seed difference to CE, "
                "with the mean and its 95 % CI.", ""]
    if settings.sweep:
        out += ["## Alpha × beta sweep", ""]
        if plots[2]:
            out += [f"![Mean test accuracy over alpha and beta]({plots[2]})", "",
                    "Colours stretch over the range of the cell means only: compare the "
                    "differences with the stds written in the cells.", ""]
        out += [_sweep_table(settings, results), ""]
    out += ["## Training curves", ""]
    if plots[1]:
        out += [f"![Mean training curves per loss]({plots[1]})", "",
                "Mean over seeds (band: ± std) of validation accuracy and training accuracy per "
                "epoch; the training loss is on each loss's own scale (CRL with α < 1 goes "
                "negative), so compare its shape, not its level.", ""]
    out += ["## Selected epoch and time", "",
            "The selected epoch is the one with the best validation accuracy (ties: the "
            "earliest), counted from 1.", "", _time_table(results), ""]
    out += ["## Files", "",
            "`results.json`: the settings, every run's numbers (backend, loss, alpha, beta, seed, "
            "test accuracy, best epoch, time, run folder) and the aggregates above. Run folders "
            "(`runs/<backend>/<loss>/seed<k>`, with `config.json`, `log.csv`, `metrics.json` "
            "and weights) are not part of a committed report; the command above recreates them.",
            ""]
    return "\n".join(out)


def _seed_text(seeds):
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]} ({len(seeds)})"
    return ", ".join(map(str, seeds))


def _sweep_table(settings, results):
    lines = []
    for backend in settings.backends:
        cells = {(r["alpha"], r["beta"]): r for r in results["sweep"] if r["backend"] == backend}
        lines += [f"**{backend}**: mean ± std (%), and below it the paired Δ vs CE (pp) with "
                  "its Holm-adjusted p over the sweep's CRL cells. The β = 0 column is CE.", "",
                  "| α \\ β | " + " | ".join(f"{b:g}" for b in SWEEP_BETAS) + " |",
                  "|---|" + "---|" * len(SWEEP_BETAS)]
        for a in SWEEP_ALPHAS:
            row = []
            for b in SWEEP_BETAS:
                cell = cells[(a, b)]
                text = f"{_pct(cell['accuracy']['mean'])} ± {_pct(cell['accuracy']['std'])}"
                c = cell["versus_ce"]
                if c and c["mean"] is not None:
                    text += f"<br>Δ {_signed(c['mean'])} (p {_p(c.get('p_holm'))})"
                row.append(text)
            lines.append(f"| {a:g} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def _time_table(results):
    lines = ["| backend | loss | selected epoch (mean) | s / epoch (median) "
             "| s / run (mean, wall) | runs timed |",
             "|---|---|---|---|---|---|"]
    totals = {}
    for row in results["summary"]:
        if row["backend"] == POOLED:
            continue
        lines.append(f"| {row['backend']} | {row['label']} | {_pct(row['mean_best_epoch'], 1)} "
                     f"| {_pct(row['seconds_per_epoch'], 3)} "
                     f"| {_pct(row['wall_seconds_per_run'], 1)} | {row['runs_timed']} |")
        totals[row["backend"]] = totals.get(row["backend"], 0.0) + row["wall_seconds_total"]
    lines += ["", "Training wall time, summed over the runs (including model building and "
              "compilation; a resumed run counts only its remainder): " + ", ".join(
                  f"{b} {t / 60:.1f} min" for b, t in totals.items()) + "."]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Plots.


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def _plot_accuracy(settings, records, results, out_dir):
    plt = _pyplot()
    backends = settings.backends
    variants = settings.variants
    fig, axes = plt.subplots(2, len(backends), figsize=(4.5 * len(backends), 6.5),
                             squeeze=False, sharex=True)
    comparisons = {(c["backend"], c["variant"]): c for c in results["comparisons"]}
    jitter = np.linspace(-0.15, 0.15, max(len(settings.seeds), 1))
    for col, backend in enumerate(backends):
        top, bottom = axes[0, col], axes[1, col]
        for i, v in enumerate(variants):
            accs = {r["seed"]: _percent(r) for r in records
                    if r["backend"] == backend and r["variant"] == v.name and not r["failed"]}
            xs = [i + jitter[settings.seeds.index(s)] for s in accs]
            top.plot(xs, list(accs.values()), "o", alpha=0.6, color=f"C{i}")
            stats = describe(list(accs.values()))
            if stats["n"]:
                top.errorbar(i, stats["mean"], yerr=stats["std"] or 0, fmt="_k", capsize=6,
                             markersize=18)
            c = comparisons.get((backend, v.name))
            if c is None:
                continue
            ce = {r["seed"]: _percent(r) for r in records
                  if r["backend"] == backend and r["variant"] == BASELINE.name and not r["failed"]}
            diffs = [(s, accs[s] - ce[s]) for s in accs if s in ce]
            bottom.plot([i + jitter[settings.seeds.index(s)] for s, _ in diffs],
                        [d for _, d in diffs], "o", alpha=0.6, color=f"C{i}")
            if c["ci"]:
                error = [[c["mean"] - c["ci"][0]], [c["ci"][1] - c["mean"]]]
                bottom.errorbar(i, c["mean"], yerr=error, fmt="_k", capsize=6, markersize=18)
        bottom.axhline(0, color="gray", lw=1)
        top.set_title(backend)
        top.set_ylabel("test accuracy (%)")
        bottom.set_ylabel("Δ vs CE (pp)")
        bottom.set_xticks(range(len(variants)))
        bottom.set_xticklabels([v.label for v in variants], rotation=30, ha="right", fontsize=8)
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy.png", dpi=90)
    plt.close(fig)
    return "accuracy.png"


def _plot_curves(settings, records, out_dir):
    plt = _pyplot()
    panels = (("val_accuracy", "validation accuracy (%)"), ("accuracy", "training accuracy (%)"),
              ("loss", "training loss (own scale)"))
    backends = settings.backends
    fig, axes = plt.subplots(len(panels), len(backends), figsize=(4.5 * len(backends), 9),
                             squeeze=False, sharex=True)
    drawn = False
    # Accuracy panels zoom to where the curves settle: the first epochs'
    # low accuracies would squash the differences into a line.
    floor = np.full(axes.shape, np.inf)
    for col, backend in enumerate(backends):
        for i, v in enumerate(settings.variants):
            logs = [r["log"] for r in records if r["backend"] == backend
                    and r["variant"] == v.name and not r["failed"] and r.get("log")]
            for row, (key, title) in enumerate(panels):
                curves = [log[key] for log in logs if key in log]
                if not curves:
                    continue
                length = min(len(c) for c in curves)
                stack = np.stack([c[:length] for c in curves])
                if key != "loss":
                    stack = 100.0 * stack
                mean, std = stack.mean(axis=0), stack.std(axis=0)
                epochs = np.arange(1, length + 1)
                ax = axes[row, col]
                ax.plot(epochs, mean, color=f"C{i}", label=v.label)
                if len(curves) > 1 and key != "loss":
                    ax.fill_between(epochs, mean - std, mean + std, color=f"C{i}", alpha=0.15)
                ax.set_ylabel(title)
                if key != "loss":
                    floor[row, col] = min(floor[row, col], (mean - std)[length // 4:].min())
                drawn = True
        axes[0, col].set_title(backend)
        axes[-1, col].set_xlabel("epoch")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    if not drawn:
        plt.close(fig)
        return None
    for (row, col), low in np.ndenumerate(floor[:2]):
        if np.isfinite(low):
            bottom, top = axes[row, col].get_ylim()
            # The std band may poke above 100 %; accuracy cannot.
            axes[row, col].set_ylim(max(low - 1.0, bottom), min(top, 100.5))
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=90)
    plt.close(fig)
    return "curves.png"


def _plot_sweep(settings, results, out_dir):
    plt = _pyplot()
    backends = settings.backends
    fig, axes = plt.subplots(1, len(backends), figsize=(5.5 * len(backends), 3.6), squeeze=False)
    for col, backend in enumerate(backends):
        ax = axes[0, col]
        grid = np.full((len(SWEEP_ALPHAS), len(SWEEP_BETAS)), np.nan)
        spread = np.full_like(grid, np.nan)
        for r in results["sweep"]:
            if r["backend"] == backend and r["accuracy"]["mean"] is not None:
                i, j = SWEEP_ALPHAS.index(r["alpha"]), SWEEP_BETAS.index(r["beta"])
                grid[i, j] = r["accuracy"]["mean"]
                spread[i, j] = r["accuracy"]["std"] if r["accuracy"]["std"] is not None else np.nan
        image = ax.imshow(grid, cmap="viridis", aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if np.isfinite(grid[i, j]):
                    text = f"{grid[i, j]:.2f}" + (
                        f"\n±{spread[i, j]:.2f}" if np.isfinite(spread[i, j]) else "")
                    ax.text(j, i, text, ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(len(SWEEP_BETAS)))
        ax.set_xticklabels([f"{b:g}" for b in SWEEP_BETAS])
        ax.set_yticks(range(len(SWEEP_ALPHAS)))
        ax.set_yticklabels([f"{a:g}" for a in SWEEP_ALPHAS])
        ax.set_xlabel("β (β = 0 is CE)")
        ax.set_ylabel("α")
        ax.set_title(f"{backend}: mean test accuracy (%)")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out_dir / "sweep.png", dpi=90)
    plt.close(fig)
    return "sweep.png"


# --------------------------------------------------------------------------
# The command.


def run_from_args(args, echo=print):
    """`keras-crl study`: resolves the arguments, trains, reports.

    With `args.worker` it only trains this process's backend's runs of the
    study already described in `args.out_dir/study.json`.

    Returns:
        The process exit code.
    """
    import keras

    current = keras.backend.backend()
    if args.worker:
        train_backend(args.out_dir, echo=echo)
        return 0
    settings = settings_from_args(args, current)
    out_dir = Path(args.out_dir)
    n_runs = len(settings.backends) * len(settings.all_variants()) * len(settings.seeds)
    echo(f"keras-crl study: {len(settings.all_variants())} losses x {len(settings.seeds)} seeds "
         f"x {len(settings.backends)} backend(s) = {n_runs} runs into {out_dir}", flush=True)
    results = run(settings, out_dir, current, echo=echo)
    echo("")
    echo(main_table(results))
    echo(f"\nReport: {out_dir / 'report.md'} (plots and results.json next to it)")
    return 0
