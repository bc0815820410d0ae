"""The study's statistics: plain and conservative, since seeds are few.

Pure NumPy/SciPy on accuracies; `analyse` turns a study's run records into
per-loss summaries and paired comparisons against cross-entropy.
"""

import math

import numpy as np

from keras_crl._optional import optional_import
from keras_crl.study.variants import AUTHORS
from keras_crl.study.variants import BASELINE
from keras_crl.study.variants import SWEEP_ALPHAS
from keras_crl.study.variants import SWEEP_BETAS
from keras_crl.study.variants import variant


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
        sign test), and seeds_for_1pp: the fewest seeds whose 95 % interval
        would be at most +-1 pp wide at this spread of the differences. t,
        p_t, ci and seeds_for_1pp are None with fewer than two seeds; t and
        p_t also when every seed moved by exactly the same amount, where the
        t test has no spread to measure (with accuracies on a few hundred
        test images and two or three seeds, that happens by chance).

    Example:

    >>> round(paired([1.0, 2.0, 3.0])["t"], 6)  # 2 / (1 / sqrt(3))
    3.464102
    """
    stats = optional_import("scipy.stats", "study", "the study's t test")

    d = np.asarray(differences, dtype=float)
    n = len(d)
    out = describe(d)
    out.update(wins=int((d > 0).sum()), ties=int((d == 0).sum()), losses=int((d < 0).sum()))
    out["p_sign"] = sign_test(out["wins"], out["losses"])
    out.update(t=None, p_t=None, ci=None, seeds_for_1pp=None)
    if n >= 2:
        out["seeds_for_1pp"] = seeds_to_resolve(out["std"], 1.0, confidence)
        se = out["std"] / math.sqrt(n)
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * se
        if se > 0:
            out["t"] = out["mean"] / se
            out["p_t"] = float(2 * stats.t.sf(abs(out["t"]), n - 1))
            out["ci"] = [out["mean"] - half, out["mean"] + half]
    return out


def seeds_to_resolve(std, difference, confidence=0.95, most=1000):
    """Fewest seeds n whose paired-t interval half-width t_(n-1) * std / sqrt(n)
    is at most `difference` (`most` if even that many are not enough).

    Example:

    >>> seeds_to_resolve(1.0, 1.0)  # t_(6) = 2.447: 2.447 / sqrt(7) = 0.92
    7
    """
    stats = optional_import("scipy.stats", "study", "the study's t test")

    if std == 0:
        return 2
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + confidence / 2, n - 1) * std / math.sqrt(n) <= difference:
            return n
    return most


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


# The calibration figures a run's metrics.json holds as `test_<name>`
# (keras_crl.calibration), each compared with CE like accuracy.
CALIBRATION = ("ece", "nll", "brier", "confidence")


def analyse(settings, records):
    """Aggregates per backend and loss, paired comparisons against CE.

    Accuracies are in percent, differences in percentage points. Paired
    differences use the seeds where both runs finished.

    Returns:
        A dict with `summary` (one row per backend and loss),
        `comparisons` (each compared loss vs CE, per backend, with Holm's
        adjustment over all of them), `head_to_head` (the authors' CRL,
        alpha 0 and beta 0.25, against every other compared loss, a Holm
        family of its own), `sweep` (the grid, when swept, with its
        own Holm family), `backend_agreement` and `calibration` (per
        figure of `CALIBRATION` that the runs recorded: its `summary` and
        `comparisons` vs CE, paired by seed like accuracy, each figure a
        Holm family of its own, so accuracy's adjusted p are as without
        them).
    """
    accuracy = {
        (r["backend"], r["variant"], unit(r)): percent(r) for r in records if not r["failed"]
    }
    versus_ce = [(v, BASELINE) for v in settings.variants if v != BASELINE]
    comparisons = _paired_rows(settings, accuracy, versus_ce)
    calibration = {}
    for figure in CALIBRATION:
        values = _figure_values(records, f"test_{figure}")
        if values:
            calibration[figure] = {
                "summary": _figure_summary(settings, values),
                "comparisons": _paired_rows(settings, values, versus_ce),
            }
    # One Holm family each: accuracy's, and each calibration figure's.
    for family in [comparisons, *(c["comparisons"] for c in calibration.values())]:
        _adjust(family)
    # What a user deciding on CRL asks: the authors' setting against each
    # other loss, a family of its own.
    head_to_head = (
        _family(
            settings,
            accuracy,
            [(AUTHORS, v) for v in settings.variants if v not in (AUTHORS, BASELINE)],
        )
        if AUTHORS in settings.variants
        else []
    )
    return {
        "summary": _summary(settings, records, accuracy) + _pooled_summary(settings, accuracy),
        "comparisons": comparisons,
        "head_to_head": head_to_head,
        "sweep": _sweep(settings, accuracy) if settings.sweep else [],
        "backend_agreement": _backend_agreement(settings, accuracy),
        "folds": _over_folds(settings, records) if settings.folds else [],
        "calibration": calibration,
    }


def unit(record):
    """What a run is paired on across losses: its `(seed, fold)` (fold None without folds)."""
    return (record["seed"], record.get("fold"))


def _figure_values(records, key):
    """(backend, variant, (seed, fold)) -> a finished run's `key`, where recorded."""
    return {
        (r["backend"], r["variant"], unit(r)): float(r[key])
        for r in records
        if not r["failed"] and r.get(key) is not None
    }


def _figure_summary(settings, values):
    """Per backend and compared loss: n, mean, std, min, max over seeds."""
    return [
        {
            "backend": backend,
            "variant": v.name,
            "label": v.label,
            **describe(_values(settings, values, backend, v)),
        }
        for backend in settings.backends
        for v in settings.variants
    ]


# `accuracy` below maps (backend, variant name, (seed, fold)) to a finished
# run's test accuracy in percent; the "seeds" are `settings.units()`.


def _values(settings, accuracy, backend, v):
    """The accuracies of `v` on `backend`, seed by seed, finished runs only."""
    return [
        accuracy[(backend, v.name, s)] for s in settings.units() if (backend, v.name, s) in accuracy
    ]


def _versus(settings, accuracy, backend, v, base=BASELINE):
    """`v` against `base` on `backend`, paired over the seeds both finished."""
    seeds = [
        s
        for s in settings.units()
        if (backend, v.name, s) in accuracy and (backend, base.name, s) in accuracy
    ]
    result = paired(
        [accuracy[(backend, v.name, s)] - accuracy[(backend, base.name, s)] for s in seeds]
    )
    return {"backend": backend, **_pair(v, base), **result}


def _seed_means(settings, accuracy, v, seeds):
    """Each seed's accuracy of `v`, averaged over the backends."""
    return [np.mean([accuracy[(b, v.name, s)] for b in settings.backends]) for s in seeds]


def _complete_seeds(settings, accuracy, *vs):
    """The seeds where every variant in `vs` finished on every backend."""
    return [
        s
        for s in settings.units()
        if all((b, v.name, s) in accuracy for b in settings.backends for v in vs)
    ]


def _family(settings, accuracy, pairs):
    """Paired comparisons of `(variant, base)` pairs on every backend and,
    with several backends, on the seed means; Holm-adjusted together."""
    return _adjust(_paired_rows(settings, accuracy, pairs))


def _adjust(rows):
    """Sets each row's `p_holm`: Holm over these rows' paired t tests alone."""
    for row, p in zip(rows, holm([r["p_t"] for r in rows])):
        row["p_holm"] = p
    return rows


def _paired_rows(settings, accuracy, pairs):
    """`_family`'s rows before Holm's adjustment (`accuracy` may hold any
    per-run figure)."""
    rows = [_versus(settings, accuracy, b, v, base) for b in settings.backends for v, base in pairs]
    if len(settings.backends) > 1:
        # The seed is the unit of replication; averaging a seed's runs
        # over the backends damps their rounding-driven divergence.
        for v, base in pairs:
            seeds = _complete_seeds(settings, accuracy, v, base)
            differences = np.subtract(
                _seed_means(settings, accuracy, v, seeds),
                _seed_means(settings, accuracy, base, seeds),
            )
            rows.append({"backend": POOLED, **_pair(v, base), **paired(differences)})
    return rows


def _summary(settings, records, accuracy):
    """One row per backend and loss: accuracy, failed seeds, timing."""
    failed = {}
    for r in records:
        if r["failed"]:
            failed.setdefault((r["backend"], r["variant"]), []).append(r["seed"])
    rows = []
    for backend in settings.backends:
        for v in settings.all_variants():
            runs = [
                r
                for r in records
                if r["backend"] == backend and r["variant"] == v.name and not r["failed"]
            ]
            rows.append(
                {
                    "backend": backend,
                    **v.as_record(),
                    "compared": v in settings.variants,
                    **describe(_values(settings, accuracy, backend, v)),
                    "failed_seeds": failed.get((backend, v.name), []),
                    "mean_best_epoch": _mean(_by_run(runs, "best_epoch"), offset=1),
                    "seconds_per_epoch": _mean(_by_run(runs, "seconds_per_epoch")),
                    "wall_seconds_per_run": _mean(_by_run(runs, "wall_seconds")),
                    "wall_seconds_total": float(sum(_by_run(runs, "wall_seconds"))),
                    "runs_timed": len(_by_run(runs, "wall_seconds")),
                }
            )
    return rows


def _over_folds(settings, records):
    """Per backend and compared loss: each fold's mean over seeds of exact and
    one-off test accuracy (%), then their mean and sample std over the folds."""
    rows = []
    for backend in settings.backends:
        for v in settings.variants:
            runs = [
                r
                for r in records
                if r["backend"] == backend and r["variant"] == v.name and not r["failed"]
            ]
            row = {"backend": backend, **v.as_record()}
            for key, value in (("accuracy", percent), ("one_off_accuracy", _one_off)):
                per_fold = []
                for fold in settings.folds:
                    values = [value(r) for r in runs if r.get("fold") == fold]
                    values = [x for x in values if x is not None]
                    if values:
                        per_fold.append(float(np.mean(values)))
                row[key] = describe(per_fold)
            rows.append(row)
    return rows


def _one_off(record):
    one_off = record.get("test_one_off_accuracy")
    return None if one_off is None else 100.0 * one_off


def _by_run(runs, key):
    return [r[key] for r in runs if r.get(key) is not None]


def _pooled_summary(settings, accuracy):
    """With several backends, one row per compared loss of per-seed means."""
    if len(settings.backends) < 2:
        return []
    return [
        {
            "backend": POOLED,
            **v.as_record(),
            "compared": True,
            **describe(
                _seed_means(settings, accuracy, v, _complete_seeds(settings, accuracy, v, BASELINE))
            ),
            "failed_seeds": [],
        }
        for v in settings.variants
    ]


def _sweep(settings, accuracy):
    """Every (alpha, beta) cell on every backend against CE, a Holm family."""
    rows = []
    for backend in settings.backends:
        for a in SWEEP_ALPHAS:
            for b in SWEEP_BETAS:
                v = variant("crl", a, b)
                rows.append(
                    {
                        "backend": backend,
                        "alpha": a,
                        "beta": b,
                        "variant": v.name,
                        "accuracy": describe(_values(settings, accuracy, backend, v)),
                        # The beta = 0 column is CE itself.
                        "versus_ce": _versus(settings, accuracy, backend, v)
                        if v != BASELINE
                        else None,
                    }
                )
    tested = [r for r in rows if r["versus_ce"] is not None]
    for row, p in zip(tested, holm([r["versus_ce"]["p_t"] for r in tested])):
        row["versus_ce"]["p_holm"] = p
    return rows


def _pair(v, base):
    return {
        "variant": v.name,
        "label": v.label,
        "baseline": base.name,
        "baseline_label": base.label,
    }


def percent(record):
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
        for s in settings.units():
            found = [accuracy.get((b, v.name, s)) for b in settings.backends]
            if None in found:
                continue
            pairs += 1
            same += max(found) == min(found)
            spread = max(spread, max(found) - min(found))
    return {"runs_compared": pairs, "identical_test_accuracy": same, "max_difference": spread}
