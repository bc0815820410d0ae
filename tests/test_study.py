"""`keras-crl study`: the loss variants, the statistics, the report and resuming.

One end-to-end study trains on the current backend only, with tiny settings
(one seed, one epoch, 192 images), to stay within seconds on every backend;
the statistics are tested on known numbers.
"""

import json
import re

import keras
import numpy as np
import pytest

from keras_crl import cli
from keras_crl import study
from keras_crl import train as train_lib

BACKEND = keras.backend.backend()
TEST_IMAGES = 359


# --------------------------------------------------------------------------
# Variants.


def test_variants_are_canonical():
    # beta = 0 is cross-entropy and alpha = 0, beta = 1 is NLLR, exactly.
    assert study.variant("crl", 0.5, 0.0) == study.BASELINE
    assert study.variant("crl", 0, 1).name == "nllr"
    assert study.parse_variant("crl:0.5:0.5").name == "crl-a0.5-b0.5"
    assert study.parse_variant(" NLLR ") == study.variant("nllr")
    assert [v.name for v in study.COMPARED] == [
        "ce",
        "nllr",
        "crl-a0-b0.25",
        "crl-a1-b1",
        "ce-ls0.1",
        "focal-gamma2",
        "crl-a0-b0.25-ls0.1",
    ]
    for v in study.COMPARED:
        assert study.parse_variant(v.spec) == v, v.spec
    grid = study.sweep_variants()
    assert len(grid) == 15
    settings = study.StudySettings(
        training={}, seeds=[0], backends=["jax"], variants=list(study.COMPARED), sweep=True
    )
    # The three beta = 0 cells are one CE run, and the first four compared
    # losses are grid cells: 15 - 2 + 3 runs per seed.
    names = [v.name for v in settings.all_variants()]
    assert len(names) == len(set(names)) == 16
    assert names[:4] == ["ce", "nllr", "crl-a0-b0.25", "crl-a1-b1"]
    for bad in ("crl:0.5", "crl:-1:0.5", "crl:a:b", "focal:1", "ce:1:1", "ce:gamma=2", "x"):
        with pytest.raises(ValueError):
            study.parse_variant(bad)


# --------------------------------------------------------------------------
# The report, from known per-run numbers (no training).


def _record(backend, v, seed, correct):
    return {
        "backend": backend,
        **v.as_record(),
        "seed": seed,
        "failed": False,
        "test_accuracy": correct / TEST_IMAGES,
        "test_images": TEST_IMAGES,
        "best_epoch": 3,
        "best_val_accuracy": 0.9,
        "final_train_loss": 0.1,
        "seconds_per_epoch": 0.2,
        "wall_seconds": 5.0,
        "run": "runs/x",
        "log": {
            "epoch": np.arange(4.0),
            "accuracy": np.linspace(0.5, 0.9, 4),
            "val_accuracy": np.linspace(0.5, 0.95, 4),
            "loss": np.linspace(2, 0.1, 4),
        },
    }


def test_report_states_what_known_numbers_support(tmp_path):
    extra = study.parse_variant("crl:0.5:0.5")
    settings = study.StudySettings(
        training={"dataset": "digits", "model": "small_cnn"},
        seeds=[0, 1, 2, 3, 4],
        backends=["tensorflow", "jax"],
        variants=[*study.COMPARED, extra],
        sweep=True,
        command="keras-crl study --sweep",
    )
    ce = [340, 342, 338, 341, 339]
    records = []
    for backend in settings.backends:
        for v in settings.all_variants():
            for seed in settings.seeds:
                if v == extra:  # 7 to 9 images better on every seed: a real effect
                    correct = ce[seed] + (7, 8, 9, 8, 7)[seed]
                elif v == study.variant("nllr"):  # noise around CE
                    correct = ce[seed] + (1, -2, 0, 2, -1)[seed]
                else:
                    correct = ce[seed]
                records.append(_record(backend, v, seed, correct))
    # One run whose loss went NaN.
    failed = next(
        i
        for i, r in enumerate(records)
        if (r["backend"], r["variant"], r["seed"]) == ("jax", extra.name, 4)
    )
    records[failed] = {**records[failed], "failed": True, "test_accuracy": None}

    results = study.write_report(settings, records, tmp_path)
    report = (tmp_path / "report.md").read_text()
    for name in ("accuracy.png", "curves.png", "sweep.png", "results.json"):
        assert (tmp_path / name).stat().st_size > 0, name

    ce_pct = 100 * np.array(ce) / TEST_IMAGES
    assert f"| tensorflow | CE | 5 | {ce_pct.mean():.2f} ± {ce_pct.std(ddof=1):.2f} |" in report
    delta = 100 * np.array([7, 8, 9, 8, 7]) / TEST_IMAGES
    assert (
        f"| tensorflow | CRL(α=0.5, β=0.5) | 5 | {(ce_pct + delta).mean():.2f} ± "
        f"{(ce_pct + delta).std(ddof=1):.2f} |"
    ) in report
    assert "| jax | CRL(α=0.5, β=0.5) | 4 (1 failed) |" in report
    assert f"| {delta.mean():+.2f} ± {delta.std(ddof=1):.2f} | " in report
    assert "**CRL(α=0.5, β=0.5) on tensorflow** is above CE" in report
    assert "**NLLR on" not in report  # noise is not reported as an effect
    # The user's question: the authors' CRL (equal to CE here) against each
    # other loss, in a Holm family of its own.
    assert "## The authors' CRL against each other loss" in report
    assert "**CRL(α=0, β=0.25) on tensorflow** is below CRL(α=0.5, β=0.5) by" in report
    assert len(results["head_to_head"]) == 3 * 6
    assert "resolving 1 pp would take" in report
    assert "a sign test cannot reach p < 0.05" in report
    assert "not independent replications" in report
    # CRL(0, 0.25) equals CE on every seed: no spread, no test.
    assert "No t test for CRL(α=0, β=0.25) on tensorflow" in report
    assert (
        "Failed runs (loss became NaN; excluded from the means): jax CRL(α=0.5, β=0.5) seed 4."
    ) in report

    # Seed means over the backends: the failed jax seed drops seed 4 there.
    ce_row = f"| all (seed means) | CE | 5 | {ce_pct.mean():.2f} ± {ce_pct.std(ddof=1):.2f} |"
    assert ce_row in report
    assert "| all (seed means) | CRL(α=0.5, β=0.5) | 4 |" in report
    pooled = next(
        c
        for c in results["comparisons"]
        if c["backend"] == "all (seed means)" and c["variant"] == extra.name
    )
    assert pooled["n"] == 4 and pooled["mean"] == pytest.approx(delta[:4].mean())
    # Holm over (2 backends + their seed means) x 7 compared losses.
    assert len(results["comparisons"]) == 21
    raw = [c["p_t"] for c in results["comparisons"]]
    assert [c["p_holm"] for c in results["comparisons"]] == study.holm(raw)
    # The sweep: 3 x 5 cells per backend; beta = 0 is CE itself.
    cells = [r for r in results["sweep"] if r["backend"] == "jax"]
    assert len(cells) == 15
    assert all(r["versus_ce"] is None for r in cells if r["beta"] == 0)
    half = next(r for r in cells if (r["alpha"], r["beta"]) == (0.5, 0.5))
    assert half["accuracy"]["n"] == 4  # the failed seed is left out
    assert "## Alpha × beta sweep" in report and "Sweep on jax" in report

    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["runs"]) == len(records) and "log" not in saved["runs"][0]


def test_other_backends_train_in_their_own_process(tmp_path):
    other = "jax" if BACKEND != "jax" else "torch"
    settings = study.StudySettings(
        training={"dataset": "nonexistent"}, seeds=[0], backends=[other], variants=[study.BASELINE]
    )
    # The worker process really starts on the other backend and refuses the
    # data set there; its one-line error comes back, named by backend.
    with pytest.raises(ValueError, match=f"^{other}: dataset='nonexistent': unknown dataset"):
        study.run(settings, tmp_path, current_backend=BACKEND)


def test_resolve_settings_fills_defaults_and_refuses_bad_values():
    training = {
        "dataset": "digits",
        "model": "small_cnn",
        "epochs": None,
        "batch_size": None,
        "learning_rate": 0.01,
        "loss": "nllr",
    }
    quick = study.resolve_settings(training, backends="jax", quick=True)
    assert quick.training["epochs"] == 8 and quick.training["learning_rate"] == 0.01
    assert quick.training["batch_size"] == 64 and "loss" not in quick.training
    assert quick.seeds == [0, 1] and quick.backends == ["jax"]
    assert "--quick" in quick.command and "--lr 0.01" in quick.command
    full = study.resolve_settings(
        training, backends=["torch", "jax", "torch"], extra=["crl:0.5:0.5"]
    )
    assert full.training["epochs"] == 30 and full.seeds == list(range(8))
    assert full.backends == ["torch", "jax"] and full.variants[-1].name == "crl-a0.5-b0.5"
    with pytest.raises(ValueError, match="Valid backends"):
        study.resolve_settings(training, backends="numpy")
    with pytest.raises(ValueError, match="seeds=0"):
        study.resolve_settings(training, backends="jax", seeds=0)
    with pytest.raises(ValueError, match="crl:ALPHA:BETA"):
        study.resolve_settings(training, backends="jax", extra=["crl:1"])


USER_LOSSES = """
import keras


class Poly1(keras.losses.Loss):
    # Cross-entropy plus epsilon * (1 - p_y), on logits and integer labels.
    def __init__(self, epsilon=1.0, from_logits=False, name="poly1"):
        super().__init__(name=name)
        self.epsilon, self.from_logits = epsilon, from_logits

    def call(self, y_true, y_pred):
        assert self.from_logits, "expects from_logits=True"
        labels = keras.ops.cast(y_true, "int32")
        ce = keras.ops.sparse_categorical_crossentropy(labels, y_pred, from_logits=True)
        p = keras.ops.softmax(y_pred)
        p_y = keras.ops.sum(p * keras.ops.one_hot(labels, y_pred.shape[-1]), axis=-1)
        return ce + self.epsilon * (1.0 - p_y)


def one_hot_only(y_true, y_pred):
    return keras.ops.categorical_crossentropy(y_true, y_pred, from_logits=True)


class OneHotOnly:
    def __call__(self, y_true, y_pred):
        return keras.ops.mean(one_hot_only(y_true, y_pred))
"""


def test_user_losses_are_checked_before_any_run(tmp_path, monkeypatch):
    (tmp_path / "user_losses.py").write_text(USER_LOSSES)
    monkeypatch.syspath_prepend(str(tmp_path))
    training = {"dataset": "digits", "model": "small_cnn"}
    settings = study.resolve_settings(
        training,
        backends=BACKEND,
        extra=["user_losses:Poly1:epsilon=2", "user_losses:OneHotOnly:one_hot=True"],
    )
    poly, one_hot = settings.variants[-2:]
    assert (poly.name, poly.label) == ("Poly1-epsilon2", "Poly1(epsilon=2)")
    assert "--extra user_losses:Poly1:epsilon=2" in settings.command
    # Built as training builds it: from_logits set, one-hot targets fed.
    loss = train_lib.config_loss(train_lib.TrainConfig(**poly.train_fields()))
    assert loss.from_logits and loss.epsilon == 2
    train_lib.check_loss(train_lib.config_loss(train_lib.TrainConfig(**one_hot.train_fields())), "")
    for extra, message in (
        ("no_such_module:Poly1", "Cannot import the loss 'no_such_module:Poly1'"),
        ("user_losses:Poly2", "Module 'user_losses' has no 'Poly2'"),
        ("user_losses:Poly1:bogus=1", "user_losses:Poly1 does not accept .*bogus=1"),
        ("user_losses:OneHotOnly", "fails on integer labels.*one_hot=True"),
    ):
        with pytest.raises(ValueError, match=message):
            study.resolve_settings(training, backends=BACKEND, extra=[extra])


def test_a_user_loss_trains(tmp_path, monkeypatch):
    (tmp_path / "user_losses.py").write_text(USER_LOSSES)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = train_lib.TrainConfig(
        loss="user_losses:Poly1",
        loss_options={"epsilon": 1.0},
        epochs=1,
        limit=128,
        run_dir=str(tmp_path / "run"),
        verbose=0,
    )
    metrics = train_lib.train(config)
    assert metrics["loss"] == "user_losses:Poly1" and metrics["loss_options"] == {"epsilon": 1.0}
    assert np.isfinite(metrics["final_train_loss"])


# --------------------------------------------------------------------------
# End to end on the current backend.


def alpha_beta(variant):
    """What a run records: alpha and beta belong to the CRL family only."""
    fields = variant.train_fields()
    return fields["alpha"], fields["beta"]


def test_quick_study_reports_its_runs_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    args = [
        "study",
        "--quick",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--limit",
        "192",
        "--out-dir",
        str(out),
    ]
    assert cli.main(args) == 0
    report = (out / "report.md").read_text()
    assert f"--backends {BACKEND}" in report and "--quick" in report
    assert "| CE | 1 |" in capsys.readouterr().out

    # The report's numbers are the run folders' metrics.json.
    results = json.loads((out / "results.json").read_text())
    assert {r["backend"] for r in results["runs"]} == {BACKEND}
    assert len(results["runs"]) == len(study.COMPARED)
    for v in study.COMPARED:
        accuracies = []
        for seed in (0,):
            folder = out / "runs" / BACKEND / v.name / f"seed{seed}"
            metrics = json.loads((folder / "metrics.json").read_text())
            assert (
                metrics["loss"],
                metrics["alpha"],
                metrics["beta"],
                metrics["label_smoothing"],
                metrics["loss_options"],
                metrics["seed"],
                metrics["epochs"],
            ) == (v.loss, *alpha_beta(v), v.label_smoothing, dict(v.options), seed, 1)
            run = next(r for r in results["runs"] if r["variant"] == v.name and r["seed"] == seed)
            assert run["test_accuracy"] == metrics["test_accuracy"]
            accuracies.append(100 * round(metrics["test_accuracy"] * TEST_IMAGES) / TEST_IMAGES)
        row = f"| {BACKEND} | {v.label} | 1 | {accuracies[0]:.2f} ± - |"
        assert row in report, row
    for name in ("accuracy.png", "curves.png"):
        assert (out / name).exists()

    # Rerun: every run is finished, nothing trains.
    calls = []
    real_train = train_lib.train

    def counting_train(config, *a, **k):
        calls.append(config)
        return real_train(config, *a, **k)

    monkeypatch.setattr(train_lib, "train", counting_train)
    assert cli.main(args) == 0
    assert calls == []

    # A run that lost its metrics.json resumes from its last checkpoint:
    # no epoch is trained again, and its numbers come back unchanged.
    folder = out / "runs" / BACKEND / "nllr" / "seed0"
    before = json.loads((folder / "metrics.json").read_text())
    log_before = (folder / "log.csv").read_text()
    (folder / "metrics.json").unlink()
    assert cli.main(args) == 0
    assert [(c.loss, c.seed, c.resume) for c in calls] == [("nllr", 0, True)]
    assert (folder / "log.csv").read_text() == log_before
    after = json.loads((folder / "metrics.json").read_text())
    assert after["test_accuracy"] == before["test_accuracy"]

    # Other training settings into the same folder would mix runs: refused.
    epochs = args.index("--epochs") + 1
    capsys.readouterr()
    assert cli.main([*args[:epochs], "2", *args[epochs + 1 :]]) == 2
    assert re.search("other settings.*epochs", capsys.readouterr().err)


# --------------------------------------------------------------------------
# Calibration beside accuracy, from known per-run numbers (no training).


def _calibrated(record, ece):
    """`record` with calibration figures: ECE `ece`, the rest fixed, and
    bins holding its images in the top two bins."""
    counts = [0.0] * 13 + [100.0, 259.0]
    return {
        **record,
        "test_ece": ece,
        "test_nll": 0.3 + ece,
        "test_brier": 0.1 + ece / 2,
        "test_confidence": 0.95,
        "test_calibration_bins": {
            "counts": counts,
            "confidences": [0.0] * 13 + [92.0, 255.0],
            "correct": [0.0] * 13 + [90.0, 250.0],
        },
    }


@pytest.mark.once_per_suite
def test_calibration_has_holm_families_of_its_own(tmp_path):
    extra = study.parse_variant("crl:0.5:0.5")
    settings = study.StudySettings(
        training={"dataset": "digits", "model": "small_cnn"},
        seeds=[0, 1, 2, 3, 4],
        backends=["tensorflow", "jax"],
        variants=[study.BASELINE, study.variant("nllr"), extra],
        command="keras-crl study",
    )
    ce = [340, 342, 338, 341, 339]
    plain, calibrated = [], []
    for backend in settings.backends:
        for v in settings.variants:
            for seed in settings.seeds:
                # Accuracy: the extra loss 7 to 9 images better, NLLR noise.
                # ECE: the extra loss about 0.02 worse on every seed, NLLR noise.
                gain = {extra: (7, 8, 9, 8, 7), study.BASELINE: (0,) * 5}.get(v, (1, -2, 0, 2, -1))
                shift = {extra: 0.02, study.BASELINE: 0.0}.get(v, 0.0)
                noise = {extra: (1, 3, 2, 0, 4), study.BASELINE: (0, 1, 2, 1, 0)}.get(
                    v, (1, 0, 2, 2, 0)
                )
                record = _record(backend, v, seed, ce[seed] + gain[seed])
                plain.append(record)
                calibrated.append(_calibrated(record, 0.03 + shift + 0.001 * noise[seed]))

    without = study.analyse(settings, plain)
    results = study.write_report(settings, calibrated, tmp_path)
    # Accuracy's comparisons, Holm-adjusted p included, are exactly as without
    # the calibration figures.
    assert results["comparisons"] == without["comparisons"]
    assert without["calibration"] == {}
    assert sorted(results["calibration"]) == ["brier", "confidence", "ece", "nll"]
    for figure, table in results["calibration"].items():
        rows = table["comparisons"]
        # 2 backends + their seed means, x 2 compared losses.
        assert len(rows) == 6, figure
        assert [c["p_holm"] for c in rows] == study.holm([c["p_t"] for c in rows]), figure
    ece = {(c["backend"], c["variant"]): c for c in results["calibration"]["ece"]["comparisons"]}
    # Differences 0.02 + 0.001 * (1, 2, 0, -1, 4): mean 0.0212.
    assert ece[("jax", extra.name)]["mean"] == pytest.approx(0.0212)
    assert ece[("jax", extra.name)]["p_holm"] < 0.05
    assert ece[("jax", "nllr")]["p_holm"] > 0.05
    summary = results["calibration"]["ece"]["summary"]
    ce_ece = next(r for r in summary if (r["backend"], r["variant"]) == ("jax", "ce"))
    assert ce_ece["mean"] == pytest.approx(0.0308)

    report = (tmp_path / "report.md").read_text()
    assert "## Calibration" in report and "bin i holding (i/15, (i+1)/15]" in report
    assert "| jax | CRL(α=0.5, β=0.5) | 5 | 0.0520 ± 0.0016 | +0.0212 (" in report
    assert "ece: differs from CE after Holm for CRL(α=0.5, β=0.5) on tensorflow (+0.0212" in report
    assert "confidence: no loss differs from CE after Holm." in report
    assert "![Reliability diagrams per loss](reliability.png)" in report
    assert (tmp_path / "reliability.png").stat().st_size > 0
    from keras_crl.study.plots import pooled_bins

    pooled = pooled_bins(calibrated, "jax", "ce")
    assert pooled["counts"][14] == 5 * 259.0 and pooled["correct"][13] == 5 * 90.0


@pytest.mark.once_per_suite
def test_the_reports_command_keeps_the_model_option_and_the_threads():
    from keras_crl.study.settings import command_line

    training = {"dataset": "digits", "model": "small_cnn", "model_options": {"batch_norm": False}}
    settings = study.resolve_settings(training, backends="jax", seeds=2)
    settings.threads = 3
    command = command_line(settings, "out")
    assert "--no-batch-norm" in command and "--threads-per-run 3" in command
