"""The study's report: `report.md`, `results.json` and the plots beside them."""

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from keras_crl.study import plots
from keras_crl.study.stats import POOLED
from keras_crl.study.stats import analyse
from keras_crl.study.stats import sign_test
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


def head_to_head_table(rows):
    """The authors' CRL minus each other loss (markdown)."""
    lines = [
        "| backend | CRL(α=0, β=0.25) vs | seeds | Δ (pp), mean ± std | 95 % CI of Δ (pp) "
        "| seeds above / tied / below | paired t (p) | p (Holm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        ci = f"[{_signed(c['ci'][0])}, {_signed(c['ci'][1])}]" if c["ci"] else "-"
        pt = f"{_t(c['t'])} ({_p(c['p_t'])})" if c["t"] is not None else "-"
        lines.append(
            f"| {c['backend']} | {c['baseline_label']} | {c['n']} "
            f"| {_signed(c['mean'])} ± {_pct(c['std'])} | {ci} "
            f"| {c['wins']} / {c['ties']} / {c['losses']} | {pt} | {_p(c.get('p_holm'))} |"
        )
    return "\n".join(lines)


def head_to_head_findings(settings, results):
    """Which differences of the authors' CRL to another loss hold up."""
    rows = results["head_to_head"]
    if len(settings.seeds) < 3:
        return ["With fewer than 3 seeds no claim is made either way."]
    shown = [c for c in rows if c.get("p_holm") is not None and c["p_holm"] < 0.05]
    lines = [
        f"**CRL(α=0, β=0.25) on {c['backend']}** is {'above' if c['mean'] > 0 else 'below'} "
        f"{c['baseline_label']} by {abs(c['mean']):.2f} pp (95 % CI "
        f"[{_signed(c['ci'][0])}, {_signed(c['ci'][1])}], Holm-adjusted p = {_p(c['p_holm'])})."
        for c in shown
    ]
    if not shown:
        lines.append(
            "**CRL(α=0, β=0.25) is not shown to differ from any other loss**: no paired t test "
            f"of the {len(rows)} comparisons has a Holm-adjusted p below 0.05."
        )
    return lines


def findings(settings, results, test_images):
    """Plain sentences on what the numbers support, and what they do not."""
    comparisons = results["comparisons"]
    n = len(settings.seeds)
    return [
        *_test_split_finding(results, test_images),
        *_resolution_finding(comparisons, n),
        *_seed_count_findings(comparisons, n),
        *_versus_ce_findings(comparisons, n),
        *_backend_agreement_finding(results.get("backend_agreement")),
        *_sweep_findings(settings, results["sweep"]),
    ]


def _test_split_finding(results, test_images):
    """How coarse the test split is, and the error the paired tests leave out."""
    means = [r["mean"] for r in results["summary"] if r["mean"] is not None]
    if not (test_images and means):
        return []
    accuracy = float(np.clip(np.mean(means) / 100.0, 0.0, 1.0))
    binomial = 100.0 * math.sqrt(accuracy * (1.0 - accuracy) / test_images)
    return [
        f"The test split has {test_images} images: one image is {100.0 / test_images:.2f} pp, "
        f"and at {100 * accuracy:.1f} % accuracy the test sample's own standard error is "
        f"about {binomial:.1f} pp. Every run is scored on these same images, so the paired "
        "seed-to-seed comparisons below do not include that error: they say whether a "
        "difference is larger than training noise on this test set, not on new images."
    ]


def _resolution_finding(comparisons, n):
    """The smallest difference these seeds resolve, and the seeds 1 pp needs."""
    widths = [(c["ci"][1] - c["ci"][0]) / 2 for c in comparisons if c.get("ci")]
    if not widths:
        return []
    needed = sorted(c["seeds_for_1pp"] for c in comparisons if c.get("seeds_for_1pp"))
    return [
        f"Smallest resolvable difference: with {n} seeds the 95 % confidence intervals of "
        f"the paired differences have half-widths of {min(widths):.2f} to "
        f"{max(widths):.2f} pp, so smaller true differences cannot be told from seed "
        "noise here."
        + (
            f" At the observed spreads, resolving 1 pp would take {needed[0]} to "
            f"{needed[-1]} seeds (median {needed[len(needed) // 2]})."
            if needed
            else ""
        )
    ]


def _seed_count_findings(comparisons, n):
    """What too few seeds, or seeds that all moved alike, rule out."""
    lines = []
    if n < 6:
        lines.append(
            f"With {n} seeds a sign test cannot reach p < 0.05 (its smallest two-sided p is "
            f"{sign_test(n, 0):.3f}); the seed counts are descriptive."
        )
    if n < 3:
        # Two seeds give a t test with one degree of freedom, and the
        # differences come in whole test images: near-equal differences
        # produce tiny p-values by accident.
        lines.append(
            f"With {n} seed(s) no claim is made either way: the numbers are a smoke "
            "test of the pipeline, not evidence."
        )
        return lines
    untestable = [c for c in comparisons if c["n"] >= 2 and c["p_t"] is None]
    if untestable:
        lines.append(
            "No t test for "
            + ", ".join(f"{c['label']} on {c['backend']}" for c in untestable)
            + ": every seed moved by the same amount, so there is no spread to "
            "measure; read its seed counts."
        )
    return lines


def _versus_ce_findings(comparisons, n):
    """Each loss that differs from CE after Holm, or that none does; the
    differences that only the unadjusted p-values show. None below 3 seeds."""
    if n < 3 or not comparisons:
        return []
    significant = [c for c in comparisons if c.get("p_holm") is not None and c["p_holm"] < 0.05]
    lines = []
    for c in significant:
        direction = "above" if c["mean"] > 0 else "below"
        lines.append(
            f"**{c['label']} on {c['backend']}** is {direction} CE by "
            f"{abs(c['mean']):.2f} pp "
            f"(95 % CI [{_signed(c['ci'][0])}, {_signed(c['ci'][1])}], Holm-adjusted "
            f"p = {_p(c['p_holm'])}, {c['wins']} of {c['n']} seeds above CE)."
        )
    if not significant:
        lines.append(
            f"**No compared loss differs from CE beyond seed-to-seed noise**: no paired t test "
            f"of the {len(comparisons)} comparisons has a Holm-adjusted p below 0.05."
        )
    raw = [
        c
        for c in comparisons
        if c.get("p_t") is not None and c["p_t"] < 0.05 and c not in significant
    ]
    if raw:
        names = ", ".join(f"{c['label']} on {c['backend']} (p = {_p(c['p_t'])})" for c in raw)
        lines.append(
            f"Unadjusted p < 0.05 but not after correcting for the "
            f"{len(comparisons)} comparisons: {names}. Treat as not shown."
        )
    return lines


def _backend_agreement_finding(agreement):
    """Why agreeing backends are not extra replications."""
    if not agreement:
        return []
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
        text += (
            ": float32 rounding differs between the backends and SGD amplifies it "
            "during training. Runs that share a seed still share their start, "
            "validation split and batches, so they may be correlated and are not "
            f"counted as extra seeds: the `{POOLED}` rows average each seed's runs over "
            "the backends and test those per-seed means (n = seeds)."
        )
    return [text]


def _sweep_findings(settings, sweep):
    """Per backend, the sweep's range of cell means and the cells that beat CE."""
    if not (settings.sweep and sweep):
        return []
    lines = []
    for backend in settings.backends:
        cells = [r for r in sweep if r["backend"] == backend and r["accuracy"]["mean"] is not None]
        if cells:
            lines.append(_sweep_finding(backend, cells))
    return lines


def _sweep_finding(backend, cells):
    best = max(cells, key=lambda r: r["accuracy"]["mean"])
    worst = min(cells, key=lambda r: r["accuracy"]["mean"])
    sig = [
        r
        for r in cells
        if r["versus_ce"]
        and r["versus_ce"].get("p_holm") is not None
        and r["versus_ce"]["p_holm"] < 0.05
    ]
    text = (
        f"Sweep on {backend}: cell means range from {worst['accuracy']['mean']:.2f} % "
        f"(α={worst['alpha']:g}, β={worst['beta']:g}) to {best['accuracy']['mean']:.2f} % "
        f"(α={best['alpha']:g}, β={best['beta']:g}), a spread of "
        f"{best['accuracy']['mean'] - worst['accuracy']['mean']:.2f} pp; "
    )
    if sig:
        return (
            text
            + "cells that differ from CE after Holm correction: "
            + ", ".join(
                f"α={r['alpha']:g} β={r['beta']:g} ({_signed(r['versus_ce']['mean'])} pp)"
                for r in sig
            )
            + "."
        )
    return (
        text + "no cell differs from CE after Holm correction over the "
        f"{sum(1 for r in cells if r['versus_ce'])} CRL cells."
    )


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
                text = f"{_pct(cell['accuracy']['mean'])} ± {_pct(cell['accuracy']['std'])}"
                c = cell["versus_ce"]
                if c and c["mean"] is not None:
                    text += f"<br>Δ {_signed(c['mean'])} (p {_p(c.get('p_holm'))})"
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
            f"| {row['backend']} | {row['label']} | {_pct(row['mean_best_epoch'], 1)} "
            f"| {_pct(row['seconds_per_epoch'], 3)} "
            f"| {_pct(row['wall_seconds_per_run'], 1)} | {row['runs_timed']} |"
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
