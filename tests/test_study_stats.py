"""The study's statistics against hand-computed values."""

import math

import numpy as np
import pytest

from keras_crl.study import stats


def test_paired_statistics_match_hand_computed_values():
    result = stats.paired([1.0, 2.0, 3.0])
    # mean 2, sd 1, se 1/sqrt(3): t = 2 sqrt(3); t(0.975, df 2) = 4.302653.
    assert result["mean"] == 2.0 and result["std"] == 1.0
    assert math.isclose(result["t"], 2 * math.sqrt(3))
    assert math.isclose(result["p_t"], 0.07418, abs_tol=1e-4)
    half = 4.302653 / math.sqrt(3)
    assert np.allclose(result["ci"], [2 - half, 2 + half], atol=1e-5)
    assert (result["wins"], result["ties"], result["losses"]) == (3, 0, 0)
    assert result["p_sign"] == 0.25

    # All seeds moved by the same amount: no spread, no t test.
    flat = stats.paired([0.5, 0.5, 0.5])
    assert flat["t"] is None and flat["p_t"] is None and flat["ci"] is None
    single = stats.paired([1.0])
    assert single["std"] is None and single["p_t"] is None

    assert stats.sign_test(5, 0) == 0.0625  # five seeds can never reach 0.05
    assert stats.sign_test(2, 2) == 1.0 and stats.sign_test(0, 0) == 1.0
    assert stats.holm([0.01, 0.04, None, 0.03]) == pytest.approx([0.03, 0.06, None, 0.06])


def test_describe_and_percent():
    assert stats.describe([1.0, 3.0]) == {
        "n": 2,
        "mean": 2.0,
        "std": math.sqrt(2),
        "min": 1.0,
        "max": 3.0,
    }
    assert stats.describe([])["mean"] is None and stats.describe([4.0])["std"] is None
    # Accuracies snap to whole test images, so equal counts compare equal.
    record = {"test_accuracy": 0.9749303460121155, "test_images": 359}
    assert stats.percent(record) == 100 * 350 / 359


def test_holm_is_monotone_and_capped():
    adjusted = stats.holm([0.001, 0.5, 0.02, 0.9])
    assert adjusted == pytest.approx([0.004, 1.0, 0.06, 1.0])
    assert stats.holm([None, None]) == [None, None]
    assert np.all(np.diff([adjusted[i] for i in (0, 2, 1, 3)]) >= 0)


def comparison(label, p_t, p_holm, mean=1.5):
    return dict(
        label=label,
        backend="jax",
        variant=label,
        mean=mean,
        std=1.0,
        ci=[0.2, 2.8],
        t=2.5,
        p_t=p_t,
        p_holm=p_holm,
        wins=6,
        ties=0,
        losses=2,
        n=8,
    )


@pytest.mark.once_per_suite
def test_findings_claim_only_what_survives_holm():
    from keras_crl.study.findings import _versus_ce_findings

    # Raw p below 0.05, Holm-adjusted above it: not shown, and said so.
    lines = _versus_ce_findings([comparison("NLLR", 0.03, 0.09)], n=8)
    assert lines[0].startswith("**No compared loss differs from CE beyond seed-to-seed noise**")
    assert "Unadjusted p < 0.05 but not after correcting" in lines[1] and "NLLR" in lines[1]
    assert not any("is above CE" in line for line in lines)
    # Below 0.05 after Holm too: the claim, with the adjusted p.
    lines = _versus_ce_findings([comparison("NLLR", 0.01, 0.03)], n=8)
    assert lines == [
        "**NLLR on jax** is above CE by 1.50 pp (95 % CI [+0.20, +2.80], Holm-adjusted "
        "p = 0.030, 6 of 8 seeds above CE)."
    ]


@pytest.mark.once_per_suite
def test_seeds_for_1pp_at_the_documented_spreads():
    # t(0.975, 7) = 2.3646: 8 seeds resolve 1 pp up to a spread of
    # sqrt(8) / 2.3646 = 1.196 pp; at 1.2 pp it takes 9 (docs/guide/study.md).
    assert stats.seeds_to_resolve(1.19, 1.0) == 8
    assert stats.seeds_to_resolve(1.2, 1.0) == 9
    # paired() reports it for its own spread: std 1.2 here.
    differences = [1.2 * d for d in (-1.0, 0.0, 1.0)]
    result = stats.paired(differences)
    assert result["std"] == pytest.approx(1.2) and result["seeds_for_1pp"] == 9
