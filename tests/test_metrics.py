"""The benchmarks' metrics on the current backend, against values worked out by hand."""

import keras
import numpy as np
import pytest

from keras_crl.metrics import OneOffAccuracy
from keras_crl.metrics import one_off_accuracy

# Five examples of five ordered classes: predicted 1, 3, 2, 0, 4 for labels
# 0, 1, 2, 3, 4, i.e. off by 1, 2, 0, 3, 0 classes.
LABELS = np.array([0, 1, 2, 3, 4])
SCORES = np.eye(5, dtype="float32")[[1, 3, 2, 0, 4]] * 3.0 - 1.0
WEIGHTS = np.array([1.0, 2.0, 3.0, 4.0, 0.0])


def test_one_off_per_example():
    values = keras.ops.convert_to_numpy(one_off_accuracy(LABELS, SCORES))
    np.testing.assert_array_equal(values, [1, 0, 1, 0, 1])
    column = keras.ops.convert_to_numpy(one_off_accuracy(LABELS[:, None], SCORES))
    np.testing.assert_array_equal(column, values)


def test_one_off_weighted_running_mean():
    metric = OneOffAccuracy()
    # Right on examples 0 and 2 (weights 1 and 3) of a total weight 10; the
    # last example has weight 0, as a padded one would.
    metric.update_state(LABELS, SCORES, sample_weight=WEIGHTS)
    assert float(metric.result()) == pytest.approx(4 / 10)
    # Running sums: one more batch, unweighted, two of two right.
    metric.update_state(np.array([2, 2]), SCORES[[1, 3]])
    assert float(metric.result()) == pytest.approx(5 / 12)
    metric.reset_state()
    metric.update_state(LABELS, SCORES)
    assert float(metric.result()) == pytest.approx(3 / 5)


def test_one_off_in_a_compiled_model_with_sample_weights():
    # Keras weighs only `weighted_metrics` by `sample_weight`; the same metric
    # under `metrics` counts every example once.
    model = keras.Sequential([keras.Input((5,)), keras.layers.Identity()])
    model.compile(
        loss="sparse_categorical_crossentropy",
        metrics=[OneOffAccuracy(name="unweighted")],
        weighted_metrics=[OneOffAccuracy()],
    )
    results = model.evaluate(
        SCORES, LABELS, sample_weight=WEIGHTS, batch_size=2, verbose=0, return_dict=True
    )
    assert results["one_off_accuracy"] == pytest.approx(4 / 10)
    assert results["unweighted"] == pytest.approx(3 / 5)
    restored = OneOffAccuracy.from_config(OneOffAccuracy(name="off1").get_config())
    assert restored.name == "off1"


def test_top5_counts_the_label_among_the_five_highest_scores():
    # Seven classes; the label ranks 1st, 5th, 6th and 7th.
    scores = np.array(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
        ],
        dtype="float32",
    )
    labels = np.array([0, 2, 1, 0])
    metric = keras.metrics.SparseTopKCategoricalAccuracy(k=5)
    metric.update_state(labels, scores, sample_weight=np.array([1.0, 2.0, 3.0, 0.5]))
    # Right on the first two: (1 + 2) / (1 + 2 + 3 + 0.5).
    assert float(metric.result()) == pytest.approx(3 / 6.5)
