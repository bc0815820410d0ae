"""Adience's five-fold protocol: `train --folds all`, its summary, resuming, and
the study's pairing by (seed, fold).

The five folds train end to end on one backend only (jax), on a miniature
tree in the publisher's layout where fold k holds k + 1 users, so each fold's
test set has its own size.
"""

import json
import re

import keras
import numpy as np
import pytest

from keras_crl import cli
from keras_crl import study
from keras_crl.study import stats
from tests.test_benchmark_loaders import write_adience

# One face per age group and a face without an age, per user: every group has
# neighbours in the data, so one-off accuracy counts more than exact accuracy
# even for a model that predicts one class.
AGES = {
    "(0, 2)": 0,
    "(4, 6)": 1,
    "(8, 12)": 2,
    "(15, 20)": 3,
    "(25, 32)": 4,
    "(38, 43)": 5,
    "(48, 53)": 6,
    "(60, 100)": 7,
    "None": None,
}
KEPT = sum(group is not None for group in AGES.values())  # usable faces per user


def fold_faces(fold):
    return KEPT * (fold + 1)


@pytest.fixture
def adience_folds(tmp_path):
    """Fold k: k + 1 users, one face per age string each."""
    return write_adience(
        tmp_path / "adience",
        lambda fold: [f"{fold}{u}000@N0{fold}" for u in range(fold + 1)],
        AGES,
    )


def _train_args(root, run_dir):
    return [
        "train",
        "--dataset",
        "adience",
        "--data-dir",
        str(root),
        "--image-size",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--verbose",
        "0",
        "--run-dir",
        str(run_dir),
        "--folds",
        "all",
    ]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the five folds train on jax only")
def test_five_folds_train_summarize_and_resume(adience_folds, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    args = _train_args(adience_folds, run)
    assert cli.main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    total = sum(fold_faces(k) for k in range(5))
    rows = []
    for k in range(5):
        folder = run / f"fold-{k}"
        metrics = json.loads((folder / "metrics.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        assert config["config"]["dataset_options"]["fold"] == k
        sizes = config["dataset"]
        # The test split is fold k's faces, and only they stay out of training.
        assert metrics["test_images"] == sizes["test"] == fold_faces(k)
        assert sizes["train"] + sizes["val"] == total - fold_faces(k)
        rows.append([metrics["test_accuracy"], metrics["test_one_off_accuracy"]])
    rows = np.array(rows)
    assert (rows[:, 1] > rows[:, 0]).any(), rows  # the two measures tell apart
    summary = json.loads((run / "folds.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1, 2, 3, 4]
    for column, measure in enumerate(("test_accuracy", "test_one_off_accuracy")):
        assert summary[measure]["mean"] == pytest.approx(rows[:, column].mean(), abs=1e-12)
        assert summary[measure]["std"] == pytest.approx(rows[:, column].std(ddof=1), abs=1e-12)
    assert "ddof=1" in summary["std"] and "ddof=1" in printed
    mean = summary["test_accuracy"]["mean"]
    assert re.search(rf"mean ± std\s+{100 * mean:.2f} ± ", printed), printed

    # Resume: the finished folds are read back; a lost fold alone trains again.
    from keras_crl import train as train_lib

    calls = []
    real = train_lib.train

    def counting(config, *a, **k):
        calls.append(config.dataset_options["fold"])
        return real(config, *a, **k)

    monkeypatch.setattr(train_lib, "train", counting)
    for name in ("metrics.json", "state.npz"):
        (run / "fold-3" / name).unlink()
    resume = ["train", "--run-dir", str(run), "--data-dir", str(adience_folds)]
    assert cli.main([*resume, "--folds", "all", "--resume", "--verbose", "0"]) == 0
    assert calls == [3]
    again = json.loads((run / "folds.json").read_text())
    assert again["config"] == summary["config"]
    assert (run / "fold-3" / "metrics.json").exists()


@pytest.mark.once_per_suite
@pytest.mark.parametrize(
    "flags, pattern",
    [
        (["--folds", "all"], r"^keras-crl train: error: --folds all: applies to data sets with"),
        (
            ["--dataset", "adience", "--fold", "2", "--folds", "all"],
            r"--folds all: trains every fold; --fold 2 trains one",
        ),
        (["--dataset", "adience", "--fold", "5"], r"--fold 5: adience has folds 0 to 4"),
    ],
)
def test_folds_flags_are_checked(tmp_path, capsys, flags, pattern):
    assert cli.main(["train", *flags, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    assert not (tmp_path / "r").exists()


@pytest.mark.once_per_suite
def test_study_folds_are_refused_without_folds(tmp_path, capsys):
    assert cli.main(["study", "--folds", "all", "--out-dir", str(tmp_path / "s")]) == 2
    assert "--folds all: applies to data sets with folds" in capsys.readouterr().err


def _record(v, seed, fold, correct, one_off, images=100):
    return {
        "backend": "jax",
        **v.as_record(),
        "seed": seed,
        "fold": fold,
        "failed": False,
        "test_accuracy": correct / images,
        "test_one_off_accuracy": one_off / images,
        "test_images": images,
    }


@pytest.mark.once_per_suite
def test_study_pairs_runs_by_seed_and_fold():
    settings = study.StudySettings(
        training={"dataset": "adience", "model": "small_cnn"},
        seeds=[0, 1],
        backends=["jax"],
        variants=[study.variant("ce"), study.variant("crl", 0, 0.25)],
        folds=[0, 1, 2],
    )
    ce, crl = settings.variants
    # CE's accuracy depends on the fold; CRL is CE plus (seed + 1) * (fold + 1)
    # images. Paired by seed only, the folds would mix.
    base = {(s, f): 50 + 10 * f + s for s in (0, 1) for f in (0, 1, 2)}
    records = []
    for (s, f), correct in base.items():
        records.append(_record(ce, s, f, correct, correct + 20))
        records.append(_record(crl, s, f, correct + (s + 1) * (f + 1), correct + 30))
    results = stats.analyse(settings, records)
    (c,) = results["comparisons"]
    expected = [(s + 1) * (f + 1) for s in (0, 1) for f in (0, 1, 2)]
    assert c["n"] == 6
    assert c["mean"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert c["std"] == pytest.approx(np.std(expected, ddof=1), abs=1e-9)
    assert c["wins"] == 6
    # Over folds: each fold's mean over seeds, then mean ± sample std over the folds.
    rows = {r["variant"]: r for r in results["folds"]}
    ce_folds = [np.mean([base[(s, f)] for s in (0, 1)]) for f in (0, 1, 2)]
    assert rows["ce"]["accuracy"]["mean"] == pytest.approx(np.mean(ce_folds), abs=1e-9)
    assert rows["ce"]["accuracy"]["std"] == pytest.approx(np.std(ce_folds, ddof=1), abs=1e-9)
    one_off = np.add(ce_folds, 20)
    assert rows["ce"]["one_off_accuracy"]["std"] == pytest.approx(np.std(one_off, ddof=1))
    assert rows["ce"]["one_off_accuracy"]["mean"] == pytest.approx(np.mean(one_off), abs=1e-9)
    assert rows["ce"]["accuracy"]["n"] == 3


@pytest.mark.once_per_suite
def test_study_with_folds_trains_each_loss_and_fold(tmp_path, monkeypatch, capsys):
    from keras_crl import train as train_lib

    seen = []

    def fake_train(config, *a, **k):
        # No training: a metrics.json whose accuracy encodes (seed, fold).
        fold = config.dataset_options["fold"]
        seen.append((config.loss, config.seed, fold, config.run_dir))
        correct = 40 + 10 * fold + ((config.loss, config.label_smoothing) != ("ce", 0.0))
        metrics = {"test_accuracy": correct / 100, "test_one_off_accuracy": 0.9}
        metrics["test_images"] = 100
        (tmp_path / config.run_dir).mkdir(parents=True, exist_ok=True)
        (tmp_path / config.run_dir / "metrics.json").write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(train_lib, "train", fake_train)
    out = tmp_path / "s"
    args = ["study", "--dataset", "adience", "--data-dir", str(tmp_path), "--folds", "all"]
    assert cli.main([*args, "--seeds", "1", "--out-dir", str(out)]) == 0, capsys.readouterr().err
    n_losses = len(study.COMPARED)
    assert len(seen) == n_losses * 5
    for _, seed, fold, run_dir in seen:
        assert run_dir.endswith(f"seed{seed}/fold-{fold}")
    results = json.loads((out / "results.json").read_text())
    assert sorted({(r["seed"], r["fold"]) for r in results["runs"]}) == [(0, f) for f in range(5)]
    # Every other loss is CE plus one image on each (seed, fold).
    for c in results["comparisons"]:
        assert (c["n"], c["mean"], c["wins"]) == (5, pytest.approx(1.0), 5), c
    report = (out / "report.md").read_text()
    assert "--folds all" in report and "## Over the folds" in report
    ce_folds = [40 + 10 * f for f in range(5)]
    row = f"| CE | 5 | {np.mean(ce_folds):.2f} ± {np.std(ce_folds, ddof=1):.2f} | 90.00 ± 0.00 |"
    assert row in report, report
