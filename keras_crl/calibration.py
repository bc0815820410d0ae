"""Calibration metrics: how far a model's confidence is from its accuracy.

A loss that widens the gap between the right class and the rest may make a
model over-confident; these four figures say by how much, beside accuracy:

- `ExpectedCalibrationError` (`"ece"`): 15 equal-width bins over the top-1
  confidence; bin `i` holds the confidences in `(i/15, (i+1)/15]`, and a
  confidence of 0 falls in bin 0 (the edges are the float32 values of
  `i/15`, compared exactly, not rounded through a product). The ECE is the
  weighted sum over bins of `|accuracy - mean confidence|`, each bin weighed
  by its share of the examples: `sum_i |A_i - C_i| / W`, with `A_i` the
  weight of the right predictions in bin `i`, `C_i` the weighed sum of
  their confidences and `W` the total weight.
- `NegativeLogLikelihood` (`"nll"`): the mean of `-log p_y`.
- `BrierScore` (`"brier"`): the mean over examples of the sum over classes
  of `(p_c - [c = y])^2`, Brier's (1950) multi-class definition, in
  `[0, 2]` (not divided by the number of classes).
- `MeanConfidence` (`"confidence"`): the mean top-1 probability.

Each is a weighted metric of running sums, multi-backend (`keras.ops`
only): `sample_weight` weighs each example, so the weight-0 padding of
`data.PaddedBatches` counts for nothing. Labels are integers, shape `(N,)` or
`(N, 1)`; predictions are logits (`from_logits=True`, as the zoo's models
give) or probabilities, used as given (no renormalisation; the NLL clips a
probability below at `keras.config.epsilon()`). The right prediction is the
arg-max of the predictions as given, as Keras' accuracy takes it.
"""

import keras
import numpy as np
from keras import ops

__all__ = [
    "BINS",
    "BrierScore",
    "ExpectedCalibrationError",
    "MeanConfidence",
    "NegativeLogLikelihood",
    "brier_score",
    "calibration_metrics",
    "expected_calibration_error",
    "negative_log_likelihood",
    "top1_confidence",
]

# The number of equal-width confidence bins of the ECE.
BINS = 15


def _probabilities(y_pred, from_logits):
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    return ops.softmax(y_pred, axis=-1) if from_logits else y_pred


def _labels(y_true):
    """Integer labels as a flat `(N,)` tensor (from `(N,)` or `(N, 1)`)."""
    return ops.reshape(ops.cast(ops.convert_to_tensor(y_true), "int32"), (-1,))


def top1_confidence(y_pred, from_logits=False):
    """The highest probability of each example.

    Args:
        y_pred: Logits or probabilities, shape `(N, C)`.
        from_logits: Whether `y_pred` are logits (a softmax first).

    Returns:
        A float32 tensor of shape `(N,)`.

    Example:

    >>> keras.ops.convert_to_numpy(top1_confidence(np.array([[0.2, 0.8], [0.5, 0.5]])))
    array([0.8, 0.5], dtype=float32)
    """
    return ops.max(_probabilities(y_pred, from_logits), axis=-1)


def negative_log_likelihood(y_true, y_pred, from_logits=False):
    """`-log p_y` of each example.

    Args:
        y_true: Integer labels, shape `(N,)` or `(N, 1)`.
        y_pred: Logits or probabilities, shape `(N, C)`.
        from_logits: Whether `y_pred` are logits (a log-softmax, exact for
            any logit); probabilities are clipped below at
            `keras.config.epsilon()`.

    Returns:
        A float32 tensor of shape `(N,)`.

    Example:

    >>> nll = negative_log_likelihood(np.array([1, 0]), np.array([[0.5, 0.5], [1.0, 0.0]]))
    >>> np.round(keras.ops.convert_to_numpy(nll), 4)
    array([0.6931, 0.    ], dtype=float32)
    """
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    if from_logits:
        log_p = ops.log_softmax(y_pred, axis=-1)
    else:
        log_p = ops.log(ops.maximum(y_pred, keras.config.epsilon()))
    is_label = ops.one_hot(_labels(y_true), ops.shape(y_pred)[-1], dtype="float32")
    # 0 - x rather than -x: a certain right answer is 0, not -0.
    return ops.subtract(0.0, ops.sum(is_label * log_p, axis=-1))


def brier_score(y_true, y_pred, from_logits=False):
    """Each example's sum over classes of `(p_c - [c = y])^2`, in `[0, 2]`.

    Brier's (1950) multi-class score: summed over the classes, not averaged.

    Args:
        y_true: Integer labels, shape `(N,)` or `(N, 1)`.
        y_pred: Logits or probabilities, shape `(N, C)`.
        from_logits: Whether `y_pred` are logits (a softmax first).

    Returns:
        A float32 tensor of shape `(N,)`.

    Example:

    >>> score = brier_score(np.array([1, 0]), np.array([[0.5, 0.5], [0.0, 1.0]]))
    >>> keras.ops.convert_to_numpy(score)  # 0.25 + 0.25; 1 + 1
    array([0.5, 2. ], dtype=float32)
    """
    p = _probabilities(y_pred, from_logits)
    is_label = ops.one_hot(_labels(y_true), ops.shape(p)[-1], dtype="float32")
    return ops.sum(ops.square(p - is_label), axis=-1)


def expected_calibration_error(counts, confidences, correct):
    """The ECE from per-bin sums, e.g. pooled over runs.

    Args:
        counts: Per bin, the weight of the examples in it.
        confidences: Per bin, their weighed sum of top-1 confidences.
        correct: Per bin, the weight of the right predictions.

    Returns:
        `sum_i |correct_i - confidences_i| / sum_i counts_i` as a float
        (0 when nothing was counted).

    Example:

    >>> round(expected_calibration_error([2, 2], [0.8, 1.8], [1, 2]), 6)  # (0.2 + 0.2) / 4
    0.1
    """
    total = float(np.sum(counts))
    if total == 0:
        return 0.0
    gap = np.abs(np.asarray(correct, float) - np.asarray(confidences, float))
    return float(gap.sum()) / total


@keras.saving.register_keras_serializable(package="keras_crl")
class ExpectedCalibrationError(keras.metrics.Metric):
    """Expected calibration error over equal-width top-1 confidence bins.

    Keeps three running sums per bin (`counts`, `confidences`, `correct`:
    the weight of the examples in the bin, their weighed confidences and
    the weight of the right predictions) and returns
    `sum_i |correct_i - confidences_i| / sum_i counts_i`. Bin `i` of `bins`
    holds the confidences in `(i/bins, (i+1)/bins]`; 0 falls in bin 0. See
    the module's description.

    Args:
        bins: Number of equal-width bins over `[0, 1]`.
        from_logits: Whether predictions are logits (a softmax first).
        name: Name of the metric.
        dtype: Data type of the sums and the result.

    Example:

    >>> ece = ExpectedCalibrationError(bins=2)
    >>> ece.update_state(np.array([0, 1, 1]),
    ...                  np.array([[0.9, 0.1], [0.7, 0.3], [0.5, 0.5]]),
    ...                  sample_weight=np.array([1.0, 1.0, 2.0]))
    >>> round(float(ece.result()), 6)  # bin 0: |0 - 1|, bin 1: |1 - 1.6|, over 4
    0.4
    >>> ece.bin_totals()["counts"]
    [2.0, 2.0]

    In `compile`, pass it among `weighted_metrics` so that `sample_weight`
    reaches it:

    ```python
    model.compile(loss=CompetingRatioLoss(from_logits=True),
                  weighted_metrics=[ExpectedCalibrationError(from_logits=True)])
    ```
    """

    def __init__(self, bins=BINS, from_logits=False, name="ece", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.bins = int(bins)
        self.from_logits = bool(from_logits)
        self._direction = "down"
        shape = (self.bins,)
        self.counts = self.add_variable(shape, initializer="zeros", name="counts")
        self.confidences = self.add_variable(shape, initializer="zeros", name="confidences")
        self.correct = self.add_variable(shape, initializer="zeros", name="correct")
        # The inner edges 1/bins ... (bins-1)/bins: a bin is the number of
        # them strictly below the confidence, so each edge closes its bin.
        self._edges = np.arange(1, self.bins, dtype="float32") / np.float32(self.bins)

    def update_state(self, y_true, y_pred, sample_weight=None):
        confidence = top1_confidence(y_pred, self.from_logits)
        labels = _labels(y_true)
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        right = ops.cast(ops.equal(predicted, labels), "float32")
        if sample_weight is None:
            weight = ops.ones_like(confidence)
        else:
            weight = ops.cast(ops.reshape(ops.convert_to_tensor(sample_weight), (-1,)), "float32")
            weight = ops.broadcast_to(weight, ops.shape(confidence))
        edges = ops.expand_dims(ops.convert_to_tensor(self._edges), 0)
        above = ops.greater(ops.expand_dims(confidence, -1), edges)
        index = ops.sum(ops.cast(above, "int32"), axis=-1)
        in_bin = ops.one_hot(index, self.bins, dtype="float32") * ops.expand_dims(weight, -1)
        for variable, value in (
            (self.counts, ops.sum(in_bin, axis=0)),
            (self.confidences, ops.sum(in_bin * ops.expand_dims(confidence, -1), axis=0)),
            (self.correct, ops.sum(in_bin * ops.expand_dims(right, -1), axis=0)),
        ):
            variable.assign_add(ops.cast(value, self.dtype))

    def result(self):
        gap = ops.sum(ops.abs(self.correct - self.confidences))
        return ops.divide_no_nan(gap, ops.sum(self.counts))

    def bin_totals(self):
        """The per-bin sums as lists of floats (`counts`, `confidences`,
        `correct`), for `metrics.json` and pooling over runs."""
        return {
            name: [float(x) for x in ops.convert_to_numpy(getattr(self, name))]
            for name in ("counts", "confidences", "correct")
        }

    def get_config(self):
        return {
            "bins": self.bins,
            "from_logits": self.from_logits,
            "name": self.name,
            "dtype": self.dtype,
        }


class _Wrapper(keras.metrics.MeanMetricWrapper):
    """A weighted mean of one of this module's per-example functions."""

    def __init__(self, fn, from_logits, name, dtype, direction):
        super().__init__(fn=fn, name=name, dtype=dtype, from_logits=bool(from_logits))
        self.from_logits = bool(from_logits)
        if direction:
            self._direction = direction

    def get_config(self):
        return {"from_logits": self.from_logits, "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="keras_crl")
class NegativeLogLikelihood(_Wrapper):
    """The weighted mean of `negative_log_likelihood`, as running sums.

    Args:
        from_logits: Whether predictions are logits.
        name: Name of the metric.
        dtype: Data type of the result.

    Example:

    >>> nll = NegativeLogLikelihood(from_logits=True)
    >>> nll.update_state(np.array([0, 1]), np.zeros((2, 2)), sample_weight=np.array([1.0, 0.0]))
    >>> round(float(nll.result()), 6)  # log 2
    0.693147
    """

    def __init__(self, from_logits=False, name="nll", dtype=None):
        super().__init__(negative_log_likelihood, from_logits, name, dtype, "down")


@keras.saving.register_keras_serializable(package="keras_crl")
class BrierScore(_Wrapper):
    """The weighted mean of `brier_score` (summed over classes), as running sums.

    Args:
        from_logits: Whether predictions are logits.
        name: Name of the metric.
        dtype: Data type of the result.

    Example:

    >>> brier = BrierScore()
    >>> brier.update_state(np.array([1, 0]), np.array([[0.5, 0.5], [0.0, 1.0]]),
    ...                    sample_weight=np.array([3.0, 1.0]))
    >>> float(brier.result())  # (3 * 0.5 + 1 * 2) / 4
    0.875
    """

    def __init__(self, from_logits=False, name="brier", dtype=None):
        super().__init__(brier_score, from_logits, name, dtype, "down")


def _confidence(y_true, y_pred, from_logits=False):
    return top1_confidence(y_pred, from_logits)


@keras.saving.register_keras_serializable(package="keras_crl")
class MeanConfidence(_Wrapper):
    """The weighted mean top-1 probability, as running sums.

    Args:
        from_logits: Whether predictions are logits.
        name: Name of the metric.
        dtype: Data type of the result.

    Example:

    >>> confidence = MeanConfidence()
    >>> confidence.update_state(np.array([0, 0]), np.array([[0.9, 0.1], [0.4, 0.6]]))
    >>> round(float(confidence.result()), 6)
    0.75
    """

    def __init__(self, from_logits=False, name="confidence", dtype=None):
        # Neither direction is better: compare it with the accuracy.
        super().__init__(_confidence, from_logits, name, dtype, None)


def calibration_metrics(from_logits=True):
    """The four calibration metrics, fresh, for `compile`'s `weighted_metrics`.

    `train` compiles them: `log.csv` gets `ece`, `nll`, `brier`,
    `confidence` (and their `val_` columns), `metrics.json` their `test_`
    figures and the ECE's bins (`test_calibration_bins`).

    Args:
        from_logits: Whether the model gives logits (the zoo's models do).

    Returns:
        `[ExpectedCalibrationError, NegativeLogLikelihood, BrierScore,
        MeanConfidence]`.

    Example:

    >>> [m.name for m in calibration_metrics()]
    ['ece', 'nll', 'brier', 'confidence']
    """
    return [
        ExpectedCalibrationError(from_logits=from_logits),
        NegativeLogLikelihood(from_logits=from_logits),
        BrierScore(from_logits=from_logits),
        MeanConfidence(from_logits=from_logits),
    ]
