"""Property-based tests of the loss against the float64 oracle, with hypothesis.

Random batch and class counts, logit scales and confident predictions,
alpha, beta, epsilon, logits or probabilities, integer, one-hot or soft
targets, float32, float16 and bfloat16 inputs, rows left out by
`ignore_class` or a Keras mask, on every backend. The oracle
(`tests/test_losses.py:crl64`) takes the exact inputs the loss gets,
widened to float64. Tolerances are the guide's (docs/guide/loss.md):
values within 1e-5, gradients within 1e-5 relative, plus 16 float32 ulps
of the value itself for losses large enough that 1e-5 is below their
resolution. Derandomized, no example database: every run draws the same
examples.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck
from hypothesis import assume
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from keras import ops

from keras_crl import CompetingRatioLoss
from keras_crl import competing_ratio_loss
from keras_crl._keras_compat import set_keras_mask
from tests.backend_utils import value_and_grad
from tests.test_losses import crl64
from tests.test_losses import numpy
from tests.test_losses import softmax64

ULP32 = np.finfo(np.float32).eps
TARGETS = ("integer", "one_hot", "soft")
SETTINGS = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def batches(draw, from_logits=None, targets=None):
    rows = draw(st.integers(1, 6))
    classes = draw(st.integers(2, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 4.0, 12.0]))
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(rows, classes)) * scale
    labels = rng.integers(0, classes, rows)
    # A confident prediction: the label's logit this far above the rest, so
    # p_y reaches 1 - epsilon and beyond, where 1 - p_y in float32 fails.
    gap = draw(st.sampled_from([None, 8.0, 12.0, 14.0, 17.0, 30.0]) | st.floats(0.0, 40.0))
    if gap is not None:
        logits[np.arange(rows), labels] = logits.max(-1) + gap
    return dict(
        logits=logits.astype("float32"),
        labels=labels,
        alpha=draw(st.sampled_from([0.0, 0.0, 0.5, 1.0]) | st.floats(0.0, 2.0)),
        beta=draw(st.sampled_from([0.0, 0.25, 1.0]) | st.floats(0.0, 1.5)),
        epsilon=draw(st.sampled_from([1e-7, 1e-5])),
        from_logits=draw(st.booleans()) if from_logits is None else from_logits,
        targets=draw(st.sampled_from(TARGETS)) if targets is None else targets,
        soft_seed=seed,
    )


def inputs(batch, dtype):
    """What the loss gets: logits or probabilities in `dtype`, and its labels."""
    pred = batch["logits"] if batch["from_logits"] else softmax64(batch["logits"])
    if dtype == "bfloat16":
        import ml_dtypes

        pred = np.asarray(pred, np.float32).astype(ml_dtypes.bfloat16)
    else:
        pred = np.asarray(pred, dtype)
    labels = batch["labels"]
    if batch["targets"] == "integer":
        return pred, labels, labels
    targets = np.eye(pred.shape[-1])[labels]
    if batch["targets"] == "soft":  # label smoothing, mixup: mass on every class
        noise = np.random.default_rng(batch["soft_seed"]).dirichlet(np.ones(pred.shape[-1]))
        targets = 0.8 * targets + 0.2 * noise
    return pred, labels, targets.astype("float32")


def oracle(batch, pred, targets):
    """Value and gradient in float64; soft targets weigh each class's loss."""
    pred = np.asarray(pred, np.float64)
    targets = np.asarray(targets, np.float64)
    if targets.ndim == 1:
        targets = np.eye(pred.shape[-1])[targets.astype(int)]
    value, grad = 0.0, 0.0
    # A 16-bit probability may round to 0: its gradient is infinite, unused.
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(pred.shape[-1]):
            v, g = crl64(
                pred,
                np.full(len(pred), k),
                batch["alpha"],
                batch["beta"],
                batch["from_logits"],
                eps=batch["epsilon"],
            )
            value = value + targets[:, k] * v
            grad = grad + targets[:, k, None] * g
    return value, grad


def loss_fn(batch, targets):
    def fn(pred):
        return competing_ratio_loss(
            targets,
            pred,
            alpha=batch["alpha"],
            beta=batch["beta"],
            from_logits=batch["from_logits"],
            epsilon=batch["epsilon"],
        )

    return fn


# Each kind of input and target gets its own examples: the regimes where a
# float32 shortcut fails (p_y near 1, alpha 0) are rare in any one of them.
@pytest.mark.parametrize("targets", TARGETS)
@pytest.mark.parametrize("from_logits", [True, False], ids=["logits", "probabilities"])
@SETTINGS
@given(data=st.data())
def test_float32_value_and_gradient_match_the_oracle(from_logits, targets, data):
    batch = data.draw(batches(from_logits, targets))
    pred, _, y = inputs(batch, "float32")
    if not from_logits:
        # From probabilities: the clamp's interior only. Where float32 decides
        # whether a class is clamped, oracle and loss may disagree by a whole
        # gradient (tests/test_losses.py pins the documented behaviour there).
        weights = np.eye(pred.shape[-1])[y] if y.ndim == 1 else y
        p = np.asarray(pred, np.float64) / np.asarray(pred, np.float64).sum(-1, keepdims=True)
        used = p[weights > 0]
        assume(np.all((used > 1e-5) & (used < 1 - 1e-5)))
    value, grad = value_and_grad(loss_fn(batch, y), pred)
    expected_value, expected_grad = oracle(batch, pred, y)
    np.testing.assert_allclose(value, expected_value, rtol=16 * ULP32, atol=1e-5)
    # Integer labels from logits: a closed form in which nothing cancels.
    # Otherwise p - t (one-hot or soft t) and, from probabilities, 1/S - 1/p_y
    # cancel in float32 as p_y -> 1: up to 2 float32 ulps of 1.
    atol = 1e-9 if from_logits and targets == "integer" else 2 * ULP32
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=atol)


@settings(SETTINGS, max_examples=25)
@given(batches(), st.sampled_from(["float16", "bfloat16"]))
def test_16_bit_inputs_are_computed_in_float32(batch, dtype):
    # The loss widens 16-bit inputs to float32 and returns the input's dtype,
    # as Keras' losses do: the float32 loss of the same (rounded) inputs,
    # rounded once, so within half an ulp of the 16-bit result of the oracle.
    pred, labels, targets = inputs(batch, dtype)
    value = numpy(loss_fn(batch, targets)(pred))
    assert value.dtype == pred.dtype
    expected_value, _ = oracle(batch, pred, targets)
    ulp = float(np.finfo(pred.dtype).eps) if dtype == "float16" else 2.0**-7
    np.testing.assert_allclose(
        np.asarray(value, np.float64), expected_value, rtol=ulp / 2 + 16 * ULP32, atol=1e-5
    )


@settings(SETTINGS, max_examples=25)
@given(batches(targets="integer"), st.data())
def test_ignored_and_masked_rows_count_for_nothing(batch, data):
    # ignore_class (outside the classes, or a real class index as in
    # segmentation) and a Keras mask on the predictions both leave a row out:
    # its loss and gradient are zero, and the mean is over the rows left.
    pred, labels, _ = inputs(batch, "float32")
    classes = pred.shape[-1]
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=len(labels), max_size=len(labels))))
    ignore_class = data.draw(st.sampled_from([-1, classes - 1]))
    if ignore_class == -1:
        labels = np.where(keep, labels, -1)
    else:
        keep = labels != ignore_class
    expected, expected_grad = oracle(batch, pred, np.where(keep, labels, 0))
    expected, expected_grad = (
        np.where(keep, expected, 0.0),
        np.where(keep[:, None], expected_grad, 0),
    )

    def fn(z):
        return competing_ratio_loss(
            labels,
            z,
            alpha=batch["alpha"],
            beta=batch["beta"],
            from_logits=batch["from_logits"],
            epsilon=batch["epsilon"],
            ignore_class=ignore_class,
        )

    if not batch["from_logits"]:
        used = (pred / pred.sum(-1, keepdims=True))[keep, labels[keep] if keep.any() else []]
        assume(np.all((used > 1e-5) & (used < 1 - 1e-5)))
    value, grad = value_and_grad(fn, pred)
    assert np.all(value[~keep] == 0) and np.all(grad[~keep] == 0)
    np.testing.assert_allclose(value, expected, rtol=16 * ULP32, atol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=2 * ULP32)
    assume(keep.any())
    loss = CompetingRatioLoss(
        alpha=batch["alpha"],
        beta=batch["beta"],
        from_logits=batch["from_logits"],
        epsilon=batch["epsilon"],
    )
    masked = ops.convert_to_tensor(pred)
    set_keras_mask(masked, ops.convert_to_tensor(keep))
    mean = float(loss(np.where(keep, labels, 0), masked))
    np.testing.assert_allclose(mean, expected[keep].mean(), rtol=16 * ULP32, atol=1e-5)
