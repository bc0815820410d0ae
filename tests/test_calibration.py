"""The calibration metrics on the current backend, against values worked out by hand.

Every figure is a float32 running sum: equal to the hand value within 1e-6
(relative), bin counts exactly.
"""

import keras
import numpy as np
import pytest

from keras_crl.calibration import BrierScore
from keras_crl.calibration import ExpectedCalibrationError
from keras_crl.calibration import MeanConfidence
from keras_crl.calibration import NegativeLogLikelihood
from keras_crl.calibration import calibration_metrics
from keras_crl.calibration import expected_calibration_error

TOLERANCE = dict(rel=1e-6, abs=1e-7)
F = np.float32


def edge(i):
    """The float32 edge i/15, the value a confidence exactly on it holds."""
    return F(i) / F(15)


# Probabilities as given (a row need not sum to 1: a row of zeros is a
# confidence of 0). Columns: label, weight, probabilities over 4 classes.
ABOVE_EDGE_1 = np.nextafter(edge(1), F(1))
ROWS = [
    (0, 1.0, [0, 0, 0, 0]),  # confidence 0: bin 0; argmax 0, right
    (1, 2.0, [edge(1), 0, 0, 0]),  # exactly 1/15: closes bin 0; wrong
    (0, 1.0, [ABOVE_EDGE_1, 0, 0, 0]),  # just above 1/15: bin 1; right
    (1, 3.0, [0.1, edge(7), 0.2, 0.2]),  # exactly 7/15: bin 6; right
    (0, 1.0, [0.5, 0.5, 0, 0]),  # 0.5 in (7/15, 8/15]: bin 7; tie -> class 0, right
    (3, 0.5, [edge(14), 0, 0, F(1) - edge(14)]),  # exactly 14/15: bin 13; wrong
    (2, 1.0, [0, 0, 1, 0]),  # confidence 1: bin 14; right
    (0, 0.0, [0.01, 0.99, 0, 0]),  # weight 0 (padding): would be bin 14, wrong
]
LABELS = np.array([r[0] for r in ROWS])
WEIGHTS = np.array([r[1] for r in ROWS], F)
PROBS = np.array([r[2] for r in ROWS], F)

COUNTS = np.zeros(15)
COUNTS[[0, 1, 6, 7, 13, 14]] = [3, 1, 3, 1, 0.5, 1]
CONFIDENCES = np.zeros(15)
CONFIDENCES[[0, 1, 6, 7, 13, 14]] = [
    2 * float(edge(1)),
    float(ABOVE_EDGE_1),
    3 * float(edge(7)),
    0.5,
    0.5 * float(edge(14)),
    1.0,
]
CORRECT = np.zeros(15)
CORRECT[[0, 1, 6, 7, 14]] = [1, 1, 3, 1, 1]
# sum |correct - confidence| over a total weight of 9.5:
# (1 - 2/15) + (1 - 1/15) + (3 - 21/15) + (1 - 1/2) + 7/15 + 0 = 65.5/15
ECE = 65.5 / 15 / 9.5


def test_ece_bins_edges_zero_one_and_weights():
    ece = ExpectedCalibrationError()
    ece.update_state(LABELS, PROBS, sample_weight=WEIGHTS)
    totals = ece.bin_totals()
    np.testing.assert_array_equal(totals["counts"], COUNTS)
    np.testing.assert_allclose(totals["confidences"], CONFIDENCES, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(totals["correct"], CORRECT)
    assert float(ece.result()) == pytest.approx(ECE, **TOLERANCE)
    assert expected_calibration_error(COUNTS, CONFIDENCES, CORRECT) == pytest.approx(ECE)


def test_ece_running_sums_over_batches_and_labels_as_a_column():
    ece = ExpectedCalibrationError()
    for part in (slice(0, 3), slice(3, 5), slice(5, None)):
        ece.update_state(LABELS[part, None], PROBS[part], sample_weight=WEIGHTS[part])
    assert float(ece.result()) == pytest.approx(ECE, **TOLERANCE)
    ece.reset_state()
    assert float(ece.result()) == 0.0  # nothing counted
    # Unweighted: every row counts once, the last (bin 14, wrong) too.
    ece.update_state(LABELS, PROBS)
    assert ece.bin_totals()["counts"][14] == 2.0


def test_ece_from_logits():
    # Logits [log 3, 0]: probabilities 0.75 and 0.25; [0, 0]: 0.5 each.
    logits = np.array([[np.log(3.0), 0.0], [0.0, 0.0], [0.0, np.log(3.0)]], F)
    ece = ExpectedCalibrationError(bins=5, from_logits=True)
    ece.update_state(np.array([0, 1, 0]), logits)
    # Bin 2 (0.4, 0.6]: 0.5, argmax 0, wrong; bin 3 (0.6, 0.8]: 0.75 twice,
    # one right. (|0 - 0.5| + |1 - 1.5|) / 3.
    assert ece.bin_totals()["counts"] == [0.0, 0.0, 1.0, 2.0, 0.0]
    assert float(ece.result()) == pytest.approx(1 / 3, **TOLERANCE)


def test_nll_brier_confidence_by_hand():
    labels = np.array([0, 1, 2, 1])
    probs = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], F)
    weights = np.array([1.0, 2.0, 0.0, 1.0], F)
    nll, brier, confidence = NegativeLogLikelihood(), BrierScore(), MeanConfidence()
    for metric in (nll, brier, confidence):
        metric.update_state(labels, probs, sample_weight=weights)
    # The weight-0 row (p_y = 0: -log epsilon) does not count.
    assert float(nll.result()) == pytest.approx(
        (np.log(2.0) + 0.0 + np.log(1 / 0.3)) / 4, **TOLERANCE
    )
    # Brier summed over classes: 0.25 + 0.0625 + 0.0625; 0; 0.04 + 0.49 + 0.25.
    assert float(brier.result()) == pytest.approx((0.375 + 0.0 + 0.78) / 4, **TOLERANCE)
    assert float(confidence.result()) == pytest.approx((0.5 + 2.0 + 0.5) / 4, **TOLERANCE)
    # A probability of 0 for the label is clipped at epsilon, not infinite.
    nll.reset_state()
    nll.update_state(np.array([2]), probs[2:3])
    assert float(nll.result()) == pytest.approx(-np.log(keras.config.epsilon()), rel=1e-6)


def test_from_logits_equals_the_softmax_and_is_exact_for_large_logits():
    logits = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]], F)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = np.array([2, 1])
    for cls in (NegativeLogLikelihood, BrierScore, MeanConfidence, ExpectedCalibrationError):
        a, b = cls(from_logits=True), cls()
        a.update_state(labels, logits)
        b.update_state(labels, probs)
        assert float(a.result()) == pytest.approx(float(b.result()), rel=1e-5), cls.__name__
    nll = NegativeLogLikelihood(from_logits=True)
    nll.update_state(np.array([1]), np.array([[1000.0, 0.0]], F))
    assert float(nll.result()) == 1000.0


def test_weighted_metrics_of_a_compiled_model_count_padding_as_nothing():
    # Keras weighs only `weighted_metrics` by `sample_weight` (as train.py
    # compiles them for data.PaddedBatches); evaluated in batches of 3.
    model = keras.Sequential([keras.Input((4,)), keras.layers.Identity()])
    model.compile(
        loss="sparse_categorical_crossentropy", weighted_metrics=calibration_metrics(False)
    )
    results = model.evaluate(
        PROBS, LABELS, sample_weight=WEIGHTS, batch_size=3, verbose=0, return_dict=True
    )
    assert results["ece"] == pytest.approx(ECE, **TOLERANCE)
    brier = np.sum((PROBS - np.eye(4)[LABELS]) ** 2, axis=-1)
    assert results["brier"] == pytest.approx(np.sum(WEIGHTS * brier) / 9.5, **TOLERANCE)
    assert results["confidence"] == pytest.approx(
        np.sum(WEIGHTS * PROBS.max(-1)) / 9.5, **TOLERANCE
    )


def test_configs_round_trip():
    ece = ExpectedCalibrationError(bins=10, from_logits=True, name="e10")
    restored = ExpectedCalibrationError.from_config(ece.get_config())
    assert (restored.bins, restored.from_logits, restored.name) == (10, True, "e10")
    brier = BrierScore.from_config(BrierScore(from_logits=True).get_config())
    assert brier.from_logits and brier.name == "brier"
