"""The study's report: `report.md`, `results.json` and the plots beside them."""

import json
import math
import os
import platform
import time
from pathlib import Path

from keras_crl.study import plots
from keras_crl.study.findings import calibration_findings
from keras_crl.study.findings import findings
from keras_crl.study.findings import head_to_head_findings
from keras_crl.study.findings import p_text
from keras_crl.study.findings import pct
from keras_crl.study.findings import signed
from keras_crl.study.findings import t_text
from keras_crl.study.stats import CALIBRATION
from keras_crl.study.stats import POOLED
from keras_crl.study.stats import analyse
from keras_crl.study.variants import BASELINE
from keras_crl.study.variants import SWEEP_ALPHAS
from keras_crl.study.variants import SWEEP_BETAS


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
    figures = [
        plots.plot_accuracy(settings, records, results, out_dir),
        plots.plot_curves(settings, records, out_dir),
        plots.plot_sweep(settings, results, out_dir) if settings.sweep else None,
        plots.plot_reliability(settings, records, out_dir),
    ]
    (out_dir / "report.md").write_text(_markdown(settings, records, results, figures))
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


def main_table(results):
    """The test-accuracy table of the compared losses (markdown)."""
    lines = [
        "| backend | loss | seeds | test accuracy, mean ± std (%) | min – max (%) "
        "| paired Δ vs CE (pp), mean ± std | 95 % CI of Δ (pp) "
        "| seeds above / tied / below CE | paired t (p) | p (Holm) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
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
            delta = f"{signed(c['mean'])} ± {pct(c['std'])}"
            ci = f"[{signed(c['ci'][0])}, {signed(c['ci'][1])}]" if c["ci"] else "-"
            counts = f"{c['wins']} / {c['ties']} / {c['losses']}"
            pt = f"{t_text(c['t'])} ({p_text(c['p_t'])})" if c["t"] is not None else "-"
            ph = p_text(c["p_holm"])
        lines.append(
            f"| {row['backend']} | {row['label']} | {row['n']}{failed} "
            f"| {pct(row['mean'])} ± {pct(row['std'])} | {pct(row['min'])} – {pct(row['max'])} "
            f"| {delta} | {ci} | {counts} | {pt} | {ph} |"
        )
    return "\n".join(lines)


def folds_table(rows):
    """Exact and one-off test accuracy per loss, mean ± std over the folds (markdown)."""
    lines = [
        "Each fold's accuracy is its mean over the seeds; mean ± sample std (n - 1) over "
        "the folds.",
        "",
        "| backend | loss | folds | exact accuracy (%) | one-off accuracy (%) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        exact, one_off = row["accuracy"], row["one_off_accuracy"]
        lines.append(
            f"| {row['backend']} | {row['label']} | {exact['n']} "
            f"| {pct(exact['mean'])} ± {pct(exact['std'])} "
            f"| {pct(one_off['mean'])} ± {pct(one_off['std'])} |"
        )
    return "\n".join(lines)


# How the report names the calibration figures (stats.CALIBRATION).
FIGURE_TITLES = {
    "ece": "ECE",
    "nll": "NLL",
    "brier": "Brier",
    "confidence": "confidence",
}


def calibration_table(calibration):
    """Each calibration figure per loss: mean ± std over seeds, and the paired
    Δ vs CE with its own family's Holm-adjusted p (markdown)."""
    figures = [f for f in CALIBRATION if f in calibration]
    lines = [
        "| backend | loss | seeds | "
        + " | ".join(f"{FIGURE_TITLES[f]} | Δ vs CE (p Holm)" for f in figures)
        + " |",
        "|---|---|---|" + "---|---|" * len(figures),
    ]
    first = calibration[figures[0]]
    versus = {
        (f, c["backend"], c["variant"]): c for f in figures for c in calibration[f]["comparisons"]
    }
    for i, row in enumerate(first["summary"]):
        cells = []
        for f in figures:
            s = calibration[f]["summary"][i]
            c = versus.get((f, row["backend"], row["variant"]))
            cells.append(f"{pct(s['mean'], 4)} ± {pct(s['std'], 4)}")
            cells.append(
                f"{signed(c['mean'], 4)} ({p_text(c.get('p_holm'))})" if c else "(baseline)"
            )
        head = f"| {row['backend']} | {row['label']} | {row['n']} | "
        lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def head_to_head_table(rows):
    """The authors' CRL minus each other loss (markdown)."""
    lines = [
        "| backend | CRL(α=0, β=0.25) vs | seeds | Δ (pp), mean ± std | 95 % CI of Δ (pp) "
        "| seeds above / tied / below | paired t (p) | p (Holm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        ci = f"[{signed(c['ci'][0])}, {signed(c['ci'][1])}]" if c["ci"] else "-"
        pt = f"{t_text(c['t'])} ({p_text(c['p_t'])})" if c["t"] is not None else "-"
        lines.append(
            f"| {c['backend']} | {c['baseline_label']} | {c['n']} "
            f"| {signed(c['mean'])} ± {pct(c['std'])} | {ci} "
            f"| {c['wins']} / {c['ties']} / {c['losses']} | {pt} | {p_text(c.get('p_holm'))} |"
        )
    return "\n".join(lines)


def _markdown(settings, records, results, plots):
    import keras

    from keras_crl import __version__

    first = next((r for r in records if r.get("config")), None)
    tr = settings.training
    out = ["# Competing Ratio Loss vs cross-entropy: study report", ""]
    out += [f"Command: `{settings.command}`", ""]
    out += [
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} by keras-crl {__version__}, Keras "
        f"{keras.__version__}, Python {platform.python_version()}, on {platform.machine()} "
        f"with {os.cpu_count()} CPU cores.",
        "",
    ]
    out += [
        "The paper (Zhang et al., Neurocomputing 2020) reports that CRL trains better "
        "classifiers than cross-entropy (CE) and NLLR, and that alpha and beta matter "
        "(ResNet-34 on CIFAR-100: 72.01 % with β = 0.25, 70.61 % with β = 0.5). A user "
        "today would compare it with what they would use instead: label smoothing (LS) "
        "and focal loss. This study trains the same network with each loss under one "
        "recipe and compares them seed by seed.",
        "",
    ]
    out += ["## Set-up", ""]
    dataset = first["config"]["dataset"] if first else {}
    recipe = first["config"]["recipe"] if first else {}
    if dataset:
        out.append(
            f"- Data: `{tr['dataset']}`, {dataset['num_classes']} classes, "
            f"input {tuple(dataset['input_shape'])}; {dataset['train']} training, "
            f"{dataset['val']} validation and {dataset['test']} test images."
        )
    out.append(f"- Model: `{tr['model']}`.")
    if recipe:
        milestones = first["config"]["milestones_used"]
        schedule = recipe["schedule"] + (
            f" (×{recipe['gamma']:g} at epochs {milestones})"
            if recipe["schedule"] == "step"
            else ""
        )
        out.append(
            f"- Recipe `{recipe['name']}`: {recipe['epochs']} epochs, "
            f"batch {recipe['batch_size']}, "
            f"SGD lr {recipe['learning_rate']:g}, momentum {recipe['momentum']:g}, weight decay "
            f"{recipe['weight_decay']:g} (coupled, as PyTorch), schedule {schedule}, augmentation "
            f"{'on' if recipe['augment'] else 'off'}. The same recipe for every loss: the claim "
            'tested is "swap the loss, keep the recipe"; no per-loss tuning.'
        )
    out.append(
        f"- Backends: {', '.join(settings.backends)}; seeds {_seed_text(settings.seeds)} "
        "for every backend and loss. A seed fixes the initial weights, the validation "
        "split, the data order and the augmentation; runs with the same seed differ "
        "only in their loss."
    )
    out.append(
        "- Reported accuracy: top-1 on the test split, of the weights with the best "
        "validation accuracy (`best.weights.h5`). Std is the sample std over seeds "
        "(n - 1). Δ is the per-seed difference to CE on the same backend, in percentage "
        "points (pp); its 95 % CI and p come from a paired t test, and p (Holm) is "
        "adjusted over all comparisons in the table."
    )
    out.append(
        "- Losses: CE = CRL with β = 0; NLLR = CRL with α = 0, β = 1; "
        "CRL(α, β) = -log p_y + β log(α + 1 - p_y); +LS(s) = the expectation of the "
        "loss under targets smoothed by s; Focal(γ) = Keras' CategoricalFocalCrossentropy "
        "(its default α = 0.25) on one-hot targets."
        + (
            " Losses named `module:Class` are the user's own, given by import path (`--extra`)."
            if any(":" in v.loss for v in settings.variants)
            else ""
        )
    )
    out.append("")
    out += ["## Test accuracy and paired comparison against CE", "", main_table(results), ""]
    if results.get("folds"):
        out += [
            "With folds, each (seed, fold) is one paired unit: the seeds column counts them, "
            "and Δ pairs runs of the same seed and test fold.",
            "",
            "## Over the folds",
            "",
            folds_table(results["folds"]),
            "",
        ]
    failures = [r for r in records if r["failed"]]
    if failures:
        out += [
            "Failed runs (loss became NaN; excluded from the means): "
            + ", ".join(f"{r['backend']} {r['label']} seed {r['seed']}" for r in failures)
            + ".",
            "",
        ]
    test_images = next((r.get("test_images") for r in records if r.get("test_images")), None)
    out += ["## What the numbers support", ""]
    out += [f"- {line}" for line in findings(settings, results, test_images)] + [""]
    if plots[0]:
        out += [
            f"![Test accuracy per seed and paired differences]({plots[0]})",
            "",
            "Top: each dot one seed, bar mean ± std. Bottom: per-seed difference to CE, "
            "with the mean and its 95 % CI.",
            "",
        ]
    if results.get("head_to_head"):
        out += [
            "## The authors' CRL against each other loss",
            "",
            "What a user choosing a loss asks: CRL(α=0, β=0.25) minus each other loss, seed by "
            "seed on the same backend (pp); p (Holm) is adjusted over this table's comparisons.",
            "",
            head_to_head_table(results["head_to_head"]),
            "",
        ]
        out += [f"- {line}" for line in head_to_head_findings(settings, results)] + [""]
    if settings.sweep:
        out += ["## Alpha × beta sweep", ""]
        if plots[2]:
            out += [
                f"![Mean test accuracy over alpha and beta]({plots[2]})",
                "",
                "Colours stretch over the range of the cell means only: compare the "
                "differences with the stds written in the cells.",
                "",
            ]
        out += [_sweep_table(settings, results), ""]
    if results.get("calibration"):
        out += _calibration_section(settings, results, plots[3])
    out += ["## Training curves", ""]
    if plots[1]:
        out += [
            f"![Mean training curves per loss]({plots[1]})",
            "",
            "Mean over seeds (band: ± std) of validation accuracy and training accuracy per "
            "epoch; the training loss is on each loss's own scale (CRL with α < 1 goes "
            "negative), so compare its shape, not its level.",
            "",
        ]
    out += [
        "## Selected epoch and time",
        "",
        "The selected epoch is the one with the best validation accuracy (ties: the "
        "earliest), counted from 1.",
        "",
        _time_table(results),
        "",
    ]
    out += [
        "## Files",
        "",
        "`results.json`: the settings, every run's numbers (backend, loss, alpha, beta, seed, "
        "test accuracy, best epoch, time, run folder) and the aggregates above. Run folders "
        "(`runs/<backend>/<loss>/seed<k>`, with `config.json`, `log.csv`, `metrics.json` "
        "and weights) are not part of a committed report; the command above recreates them.",
        "",
    ]
    return "\n".join(out)


def _calibration_section(settings, results, reliability):
    out = [
        "## Calibration",
        "",
        "On the test split, of the same weights as the accuracy: expected calibration "
        "error (ECE, 15 equal-width bins of the top-1 confidence, bin i holding "
        "(i/15, (i+1)/15]), negative log-likelihood (NLL), Brier score (summed over the "
        "classes, in [0, 2]) and mean top-1 confidence; lower is better but for the "
        "confidence, which reads against the accuracy. Δ is the per-seed difference to CE "
        "on the same backend; each figure's p (Holm) is adjusted over that figure's "
        "comparisons alone, so accuracy's adjusted p above are as without them.",
        "",
        calibration_table(results["calibration"]),
        "",
    ]
    out += [f"- {line}" for line in calibration_findings(settings, results)] + [""]
    if reliability:
        out += [
            f"![Reliability diagrams per loss]({reliability})",
            "",
            "Per confidence bin, pooled over the seeds: the bars are the accuracy, the dots "
            "the mean confidence; a calibrated model stays on the diagonal. The ECE in each "
            "panel is the pooled bins' (not the mean of the runs' ECEs in the table).",
            "",
        ]
    return out


def _seed_text(seeds):
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 2:
        return f"{seeds[0]}–{seeds[-1]} ({len(seeds)})"
    return ", ".join(map(str, seeds))


def _sweep_table(settings, results):
    lines = []
    for backend in settings.backends:
        cells = {(r["alpha"], r["beta"]): r for r in results["sweep"] if r["backend"] == backend}
        lines += [
            f"**{backend}**: mean ± std (%), and below it the paired Δ vs CE (pp) with "
            "its Holm-adjusted p over the sweep's CRL cells. The β = 0 column is CE.",
            "",
            "| α \\ β | " + " | ".join(f"{b:g}" for b in SWEEP_BETAS) + " |",
            "|---|" + "---|" * len(SWEEP_BETAS),
        ]
        for a in SWEEP_ALPHAS:
            row = []
            for b in SWEEP_BETAS:
                cell = cells[(a, b)]
                text = f"{pct(cell['accuracy']['mean'])} ± {pct(cell['accuracy']['std'])}"
                c = cell["versus_ce"]
                if c and c["mean"] is not None:
                    text += f"<br>Δ {signed(c['mean'])} (p {p_text(c.get('p_holm'))})"
                row.append(text)
            lines.append(f"| {a:g} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def _time_table(results):
    lines = [
        "| backend | loss | selected epoch (mean) | s / epoch (median) "
        "| s / run (mean, wall) | runs timed |",
        "|---|---|---|---|---|---|",
    ]
    totals = {}
    for row in results["summary"]:
        if row["backend"] == POOLED:
            continue
        lines.append(
            f"| {row['backend']} | {row['label']} | {pct(row['mean_best_epoch'], 1)} "
            f"| {pct(row['seconds_per_epoch'], 3)} "
            f"| {pct(row['wall_seconds_per_run'], 1)} | {row['runs_timed']} |"
        )
        totals[row["backend"]] = totals.get(row["backend"], 0.0) + row["wall_seconds_total"]
    lines += [
        "",
        "Training wall time, summed over the runs (including model building and "
        "compilation; a resumed run counts only its remainder): "
        + ", ".join(f"{b} {t / 60:.1f} min" for b, t in totals.items())
        + ".",
    ]
    return "\n".join(lines)
