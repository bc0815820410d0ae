"""The study's figures: accuracy per seed, training curves, the sweep's heat
map, and the reliability diagrams."""

import itertools

import numpy as np

from keras_crl._optional import optional_import
from keras_crl.calibration import expected_calibration_error
from keras_crl.study.stats import describe
from keras_crl.study.stats import percent
from keras_crl.study.stats import unit
from keras_crl.study.variants import BASELINE
from keras_crl.study.variants import SWEEP_ALPHAS
from keras_crl.study.variants import SWEEP_BETAS


def _pyplot():
    matplotlib = optional_import("matplotlib", "study", "the study's plotting")
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def plot_accuracy(settings, records, results, out_dir):
    plt = _pyplot()
    backends = settings.backends
    variants = settings.variants
    fig, axes = plt.subplots(
        2, len(backends), figsize=(4.5 * len(backends), 6.5), squeeze=False, sharex=True
    )
    comparisons = {(c["backend"], c["variant"]): c for c in results["comparisons"]}
    units = settings.units()  # (seed, fold): the runs paired across losses
    jitter = np.linspace(-0.15, 0.15, max(len(units), 1))
    for col, backend in enumerate(backends):
        top, bottom = axes[0, col], axes[1, col]
        for i, v in enumerate(variants):
            accs = {
                unit(r): percent(r)
                for r in records
                if r["backend"] == backend and r["variant"] == v.name and not r["failed"]
            }
            xs = [i + jitter[units.index(s)] for s in accs]
            top.plot(xs, list(accs.values()), "o", alpha=0.6, color=f"C{i}")
            stats = describe(list(accs.values()))
            if stats["n"]:
                top.errorbar(
                    i, stats["mean"], yerr=stats["std"] or 0, fmt="_k", capsize=6, markersize=18
                )
            c = comparisons.get((backend, v.name))
            if c is None:
                continue
            ce = {
                unit(r): percent(r)
                for r in records
                if r["backend"] == backend and r["variant"] == BASELINE.name and not r["failed"]
            }
            diffs = [(s, accs[s] - ce[s]) for s in accs if s in ce]
            bottom.plot(
                [i + jitter[units.index(s)] for s, _ in diffs],
                [d for _, d in diffs],
                "o",
                alpha=0.6,
                color=f"C{i}",
            )
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


def plot_curves(settings, records, out_dir):
    plt = _pyplot()
    panels = (
        ("val_accuracy", "validation accuracy (%)"),
        ("accuracy", "training accuracy (%)"),
        ("loss", "training loss (own scale)"),
    )
    backends = settings.backends
    fig, axes = plt.subplots(
        len(panels), len(backends), figsize=(4.5 * len(backends), 9), squeeze=False, sharex=True
    )
    drawn = False
    # Accuracy panels zoom to where the curves settle: the first epochs'
    # low accuracies would squash the differences into a line.
    floor = np.full(axes.shape, np.inf)
    for col, backend in enumerate(backends):
        for i, v in enumerate(settings.variants):
            logs = [
                r["log"]
                for r in records
                if r["backend"] == backend
                and r["variant"] == v.name
                and not r["failed"]
                and r.get("log")
            ]
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
                    floor[row, col] = min(floor[row, col], (mean - std)[length // 4 :].min())
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


def plot_sweep(settings, results, out_dir):
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
                        f"\n±{spread[i, j]:.2f}" if np.isfinite(spread[i, j]) else ""
                    )
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


def pooled_bins(records, backend, variant):
    """The ECE's per-bin sums of `variant` on `backend`, summed over its
    finished seeds (`metrics.json`'s `test_calibration_bins`); None without."""
    found = [
        r["test_calibration_bins"]
        for r in records
        if r["backend"] == backend
        and r["variant"] == variant
        and not r["failed"]
        and r.get("test_calibration_bins")
    ]
    if not found:
        return None
    return {k: np.sum([np.asarray(b[k], float) for b in found], axis=0) for k in found[0]}


def plot_reliability(settings, records, out_dir):
    """A reliability diagram per loss (columns) and backend (rows): per
    confidence bin, the accuracy and the mean confidence, pooled over seeds."""
    plt = _pyplot()
    backends, variants = settings.backends, settings.variants
    if not any(pooled_bins(records, b, v.name) for b in backends for v in variants):
        return None
    fig, axes = plt.subplots(
        len(backends),
        len(variants),
        figsize=(2.6 * len(variants), 2.8 * len(backends)),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for (row, backend), (col, v) in itertools.product(enumerate(backends), enumerate(variants)):
        ax = axes[row, col]
        ax.plot([0, 1], [0, 1], color="gray", lw=1)
        bins = pooled_bins(records, backend, v.name)
        if bins is not None:
            counts = bins["counts"]
            width = 1.0 / len(counts)
            left = np.arange(len(counts)) * width
            seen = counts > 0
            accuracy = np.divide(bins["correct"], counts, where=seen, out=np.zeros_like(counts))
            confidence = np.divide(
                bins["confidences"], counts, where=seen, out=np.zeros_like(counts)
            )
            ax.bar(left[seen], accuracy[seen], width, align="edge", color=f"C{col}", alpha=0.7)
            ax.plot(confidence[seen], accuracy[seen], ".k", markersize=4)
            ece = expected_calibration_error(counts, bins["confidences"], bins["correct"])
            ax.text(0.04, 0.9, f"ECE {ece:.3f}", fontsize=8)
        ax.set_title(f"{v.label}" + (f" ({backend})" if len(backends) > 1 else ""), fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        if row == len(backends) - 1:
            ax.set_xlabel("confidence")
        if col == 0:
            ax.set_ylabel("accuracy")
    fig.tight_layout()
    fig.savefig(out_dir / "reliability.png", dpi=90)
    plt.close(fig)
    return "reliability.png"
