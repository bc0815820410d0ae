"""Metrics for the paper's benchmarks beyond top-1 accuracy.

Adience's age groups are ordered, so a prediction one group off is reported
too (`OneOffAccuracy`). Top-5 accuracy for ImageNet is Keras' own
`keras.metrics.SparseTopKCategoricalAccuracy(k=5)`.
"""

import keras
from keras import ops

__all__ = ["OneOffAccuracy", "benchmark_metrics", "one_off_accuracy"]


def one_off_accuracy(y_true, y_pred):
    """1 where the predicted class is within one class of the label, else 0.

    For ordered classes (Adience's age groups): the arg-max of `y_pred`
    counts as right when it is the label or a neighbour of it.

    Args:
        y_true: Integer labels, shape `(N,)` or `(N, 1)`.
        y_pred: Scores (logits or probabilities), shape `(N, C)`.

    Returns:
        A float tensor of shape `(N,)`.

    Example:

    >>> keras.ops.convert_to_numpy(one_off_accuracy(
    ...     np.array([0, 2, 4]),
    ...     np.array([[0.0, 1.0, 0, 0, 0], [1.0, 0, 0, 0, 0], [0, 0, 0, 0, 1.0]])))
    array([1., 0., 1.], dtype=float32)
    """
    y_pred = ops.convert_to_tensor(y_pred)
    predicted = ops.argmax(y_pred, axis=-1)
    y_true = ops.convert_to_tensor(y_true)
    # (N, 1) labels against (N, C) scores: drop the label's unit axis.
    if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    distance = ops.abs(ops.cast(predicted, "int32") - ops.cast(y_true, "int32"))
    return ops.cast(ops.less_equal(distance, 1), keras.backend.floatx())


@keras.saving.register_keras_serializable(package="keras_crl")
class OneOffAccuracy(keras.metrics.MeanMetricWrapper):
    """How often the predicted class is within one class of the label.

    The weighted mean of `one_off_accuracy` over everything seen since the
    last reset, kept as running sums (`total`, `count`) like Keras'
    accuracies: `sample_weight` weighs each example (a weight of 0 leaves
    a padded example out).

    Args:
        name: Name of the metric.
        dtype: Data type of the result.

    Example:

    >>> metric = OneOffAccuracy()
    >>> metric.update_state(np.array([0, 3, 5]),
    ...                     np.eye(8)[[1, 5, 5]], sample_weight=np.array([1.0, 1.0, 2.0]))
    >>> float(metric.result())
    0.75

    In `compile`, pass it as a `weighted_metrics` entry: Keras weighs only
    those by the `sample_weight` given to `fit` / `evaluate`.

    ```python
    model.compile(loss=CompetingRatioLoss(from_logits=True),
                  weighted_metrics=["accuracy", OneOffAccuracy()])
    ```
    """

    def __init__(self, name="one_off_accuracy", dtype=None):
        super().__init__(fn=one_off_accuracy, name=name, dtype=dtype)
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def benchmark_metrics(dataset):
    """The metrics a data set is reported with, beside top-1 accuracy.

    ImageNet: top-5 accuracy; Adience: one-off accuracy (its age groups are
    ordered). Fresh metric objects, for `compile`; `train` writes them to
    `log.csv` and `metrics.json` under their names.

    Args:
        dataset: A name from `keras_crl.data.list_datasets()`
            (`"imagenet"`, `"adience"`; a `_stream` variant counts as its set).

    Returns:
        A list of `keras.metrics.Metric`, empty for the other data sets.

    Example:

    >>> [m.name for m in benchmark_metrics("adience")]
    ['one_off_accuracy']
    >>> benchmark_metrics("cifar100")
    []
    """
    name = str(dataset).removesuffix("_stream")
    if name == "imagenet":
        return [keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5_accuracy")]
    if name == "adience":
        return [OneOffAccuracy()]
    return []
