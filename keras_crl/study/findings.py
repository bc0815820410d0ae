"""The study's findings: plain sentences on what its numbers support, and what they do not.

`report.md` lists them under its tables; the number formats here are the
report's too.
"""

import math

import numpy as np

from keras_crl.study.stats import POOLED
from keras_crl.study.stats import sign_test


def pct(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def signed(x, digits=2):
    return "-" if x is None else f"{x:+.{digits}f}"


def p_text(p):
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def t_text(t):
    if t is None:
        return "-"
    return f"{t:+.2f}" if math.isfinite(t) else ("+inf" if t > 0 else "-inf")


def head_to_head_findings(settings, results):
    """Which differences of the authors' CRL to another loss hold up."""
    rows = results["head_to_head"]
    if len(settings.seeds) < 3:
        return ["With fewer than 3 seeds no claim is made either way."]
    shown = [c for c in rows if c.get("p_holm") is not None and c["p_holm"] < 0.05]
    lines = [
        f"**CRL(α=0, β=0.25) on {c['backend']}** is {'above' if c['mean'] > 0 else 'below'} "
        f"{c['baseline_label']} by {abs(c['mean']):.2f} pp (95 % CI "
        f"[{signed(c['ci'][0])}, {signed(c['ci'][1])}], Holm-adjusted p = {p_text(c['p_holm'])})."
        for c in shown
    ]
    if not shown:
        lines.append(
            "**CRL(α=0, β=0.25) is not shown to differ from any other loss**: no paired t test "
            f"of the {len(rows)} comparisons has a Holm-adjusted p below 0.05."
        )
    return lines


def calibration_findings(settings, results):
    """Per calibration figure, the losses that differ from CE after its own Holm
    family; none below 3 seeds."""
    if len(settings.seeds) < 3:
        return ["With fewer than 3 seeds no calibration claim is made either way."]
    lines = []
    for figure, table in results["calibration"].items():
        shown = [
            c for c in table["comparisons"] if c.get("p_holm") is not None and c["p_holm"] < 0.05
        ]
        names = ", ".join(
            f"{c['label']} on {c['backend']} ({signed(c['mean'], 4)}, p = {p_text(c['p_holm'])})"
            for c in shown
        )
        verdict = f"differs from CE after Holm for {names}." if shown else None
        lines.append(f"{figure}: " + (verdict or "no loss differs from CE after Holm."))
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
            f"(95 % CI [{signed(c['ci'][0])}, {signed(c['ci'][1])}], Holm-adjusted "
            f"p = {p_text(c['p_holm'])}, {c['wins']} of {c['n']} seeds above CE)."
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
        names = ", ".join(f"{c['label']} on {c['backend']} (p = {p_text(c['p_t'])})" for c in raw)
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
                f"α={r['alpha']:g} β={r['beta']:g} ({signed(r['versus_ce']['mean'])} pp)"
                for r in sig
            )
            + "."
        )
    return (
        text + "no cell differs from CE after Holm correction over the "
        f"{sum(1 for r in cells if r['versus_ce'])} CRL cells."
    )
