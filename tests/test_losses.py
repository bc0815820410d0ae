"""Tests of the CRL loss family, run once per backend (KERAS_BACKEND)."""

import inspect
import types
import warnings

import keras
import numpy as np
import pytest
from keras import ops

from keras_crl import CompetingRatioLoss
from keras_crl import NegativeLogLikelihoodRatioLoss
from keras_crl import competing_ratio_loss
from keras_crl import losses as losses_module
from keras_crl import negative_log_likelihood_ratio_loss
from tests.backend_utils import BACKEND
from tests.backend_utils import HAS_XLA
from tests.backend_utils import op_determinism_off
from tests.backend_utils import value_and_grad
from tests.backend_utils import xla

# --------------------------------------------------------------------------
# NumPy oracles, in float64.


def softmax64(logits):
    z = np.asarray(logits, "float64")
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def authors_crl(logits, labels, beta, alpha=0.0, eps=1e-7, artifact=False):
    """A NumPy port of the authors' released PyTorch loss (per sample).

    Their code: p = clamp(softmax(x), 1e-7, 1 - 1e-7); p_y = p[y];
    loss = log((1 - p_y) ** beta / p_y + 1e-7). `alpha` generalises the
    `1 - p_y` to `alpha + 1 - p_y`; `artifact` keeps their `+ 1e-7`.
    """
    p = np.clip(softmax64(logits), eps, 1 - eps)
    p_y = p[np.arange(len(labels)), labels]
    return np.log((alpha + 1 - p_y) ** beta / p_y + (1e-7 if artifact else 0.0))


def formula(logits, labels, alpha, beta):
    """L = -log p_y + beta log(alpha + 1 - p_y) and its exact gradient."""
    p = softmax64(logits)
    rows = np.arange(len(labels))
    p_y = p[rows, labels]
    # 1 - p_y summed from the competitors, so the oracle itself is exact.
    q = p.sum(-1) - p_y
    q = np.where(p_y > 0.5, np.array([np.delete(r, y).sum() for r, y in zip(p, labels)]), q)
    value = -np.log(p_y) + beta * np.log(alpha + q)
    onehot = np.eye(p.shape[-1])[labels]
    grad = (1 + beta * p_y / (alpha + q))[:, None] * (p - onehot)
    return value, grad


def crl64(pred, labels, alpha, beta, from_logits, eps=1e-7):
    """The float64 oracle: each sample's loss and its gradient w.r.t. `pred`.

    `pred` holds the float32 logits or probabilities the loss gets, here
    taken exactly to float64; probabilities are normalised. The competing
    mass is the competitors' sum, exact in float64. The clamps are the
    documented ones: from probabilities `p_y` is clipped to
    `[eps, 1 - eps]` (the competing mass to `[eps, 1 - eps]` with it), from
    logits only `p_y <= 1 - eps` (the competing mass `>= eps`). A clamped
    sample has zero gradient.
    """
    x = np.asarray(pred, "float64")
    total = x.sum(-1, keepdims=True)
    p = softmax64(x) if from_logits else x / total
    onehot = np.eye(x.shape[-1])[labels]
    p_y = (p * onehot).sum(-1)
    q = (p * (1 - onehot)).sum(-1)
    if from_logits:
        value = -np.log(np.minimum(p_y, 1 - eps)) + beta * np.log(alpha + np.maximum(q, eps))
        grad = (1 + beta * p_y / (alpha + q))[:, None] * (p - onehot)
        free = p_y <= 1 - eps
    else:
        value = -np.log(np.clip(p_y, eps, 1 - eps)) + beta * np.log(
            alpha + np.clip(q, eps, 1 - eps)
        )
        # d/dx of -log(x_y / S) and of log(alpha + sum_{j != y} x_j / S).
        grad = (1 - onehot / p_y[:, None]) / total + beta * ((1 - onehot) - q[:, None]) / (
            total * (alpha + q[:, None])
        )
        free = (p_y >= eps) & (p_y <= 1 - eps)
    return value, np.where(free[:, None], grad, 0.0)


def numeric_grad(fn, x, h=1e-6):
    x = np.asarray(x, "float64")
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = h
        grad[idx] = (fn(x + step).sum() - fn(x - step).sum()) / (2 * h)
    return grad


def logits_with_p_y(p_y, num_classes=10, label=3, seed=0):
    """float32 logits whose softmax puts probability ~p_y on `label`."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(len(p_y), num_classes))
    rest = np.log(np.exp(np.delete(z, label, axis=1)).sum(1))
    z[:, label] = rest + np.log(p_y) - np.log1p(-np.asarray(p_y))
    return z.astype("float32")


LOGITS = np.array(
    [
        [4.0, 1.0, 0.0, -1.0],  # confident, correct
        [0.5, 0.5, 3.0, 0.0],  # wrong
        [0.0, 0.0, 0.0, 0.0],  # uniform
        [2.0, -3.0, 1.0, 0.5],
        [-8.0, 9.0, 0.0, 1.0],  # hopeless for label 0
    ],
    "float32",
)
LABELS = np.array([0, 1, 2, 3, 0])


def numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


# --------------------------------------------------------------------------
# Values.


class TestValues:
    def test_hand_computed_value(self):
        # p = softmax([4, 1, 0]) = [0.9362, 0.0466, 0.0171]:
        # -log 0.9362 + 0.25 * log 0.0638 = 0.0659 - 0.6881.
        loss = competing_ratio_loss([0], [[4.0, 1.0, 0.0]], from_logits=True)
        np.testing.assert_allclose(numpy(loss), [-0.62227], atol=1e-5)

    @pytest.mark.parametrize("alpha,beta", [(0.0, 0.25), (0.0, 0.75), (1.0, 1.0), (0.5, 0.5)])
    def test_matches_authors_code(self, alpha, beta):
        # Rows whose p_y is inside the clamp [1e-7, 1 - 1e-7]; see the
        # hopeless-sample test for the last row.
        logits, labels = LOGITS[:4], LABELS[:4]
        value = competing_ratio_loss(labels, logits, alpha=alpha, beta=beta, from_logits=True)
        np.testing.assert_allclose(
            numpy(value), authors_crl(logits, labels, beta, alpha), atol=1e-5
        )
        # Their `+ 1e-7` inside the log is negligible away from p_y -> 1.
        np.testing.assert_allclose(
            numpy(value),
            authors_crl(logits, labels, beta, alpha, artifact=True),
            atol=1e-5,
        )

    def test_hopeless_sample_keeps_cross_entropy_gradient_from_logits(self):
        # p_y = 2.5e-8 < epsilon. The authors' clamp (kept for probability
        # input) freezes such a sample; from logits it keeps -log p_y and its
        # gradient, as Keras' cross-entropy from logits does.
        p_y = softmax64(LOGITS)[4, 0]
        value, grad = value_and_grad(
            lambda z: competing_ratio_loss(LABELS, z, from_logits=True), LOGITS
        )
        np.testing.assert_allclose(value[4], -np.log(p_y) + 0.25 * np.log1p(-p_y), rtol=1e-6)
        _, expected = formula(LOGITS, LABELS, 0.0, 0.25)
        np.testing.assert_allclose(grad[4], expected[4], atol=1e-6)
        probs = softmax64(LOGITS).astype("float32")
        np.testing.assert_allclose(
            numpy(competing_ratio_loss(LABELS, probs))[4],
            authors_crl(LOGITS, LABELS, 0.25)[4],
            rtol=1e-6,
        )

    @pytest.mark.parametrize("alpha,beta", [(0.0, 0.25), (1.0, 1.0)])
    def test_gradient_matches_authors_code(self, alpha, beta):
        logits, labels = LOGITS[:4], LABELS[:4]
        _, grad = value_and_grad(
            lambda z: competing_ratio_loss(labels, z, alpha=alpha, beta=beta, from_logits=True),
            logits,
        )
        expected = numeric_grad(
            lambda z: authors_crl(z, labels, beta, alpha), logits.astype("float64")
        )
        np.testing.assert_allclose(grad, expected, atol=1e-5)

    def test_probabilities_match_authors_code(self):
        probs = softmax64(LOGITS).astype("float32")
        value = competing_ratio_loss(LABELS, probs)
        np.testing.assert_allclose(numpy(value), authors_crl(LOGITS, LABELS, 0.25), atol=1e-5)
        _, grad = value_and_grad(lambda p: competing_ratio_loss(LABELS, p), probs)

        # d/dp of -log p_y + beta log(1 - p_y), through the normalisation.
        def from_probs(q):
            q = np.clip(q / q.sum(-1, keepdims=True), 1e-7, 1 - 1e-7)
            q_y = q[np.arange(len(LABELS)), LABELS]
            return -np.log(q_y) + 0.25 * np.log(1 - q_y)

        expected = numeric_grad(from_probs, probs.astype("float64"), h=1e-9)
        np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-5)

    def test_beta_zero_is_cross_entropy(self):
        crl = competing_ratio_loss(LABELS, LOGITS, beta=0.0, from_logits=True)
        ce = keras.losses.sparse_categorical_crossentropy(LABELS, LOGITS, from_logits=True)
        np.testing.assert_allclose(numpy(crl), numpy(ce), atol=1e-6)
        probs = softmax64(LOGITS).astype("float32")
        onehot = np.eye(4, dtype="float32")[LABELS]
        np.testing.assert_allclose(
            numpy(competing_ratio_loss(onehot, probs, beta=0.0)),
            numpy(keras.losses.categorical_crossentropy(onehot, probs)),
            atol=1e-6,
        )

    def test_nllr_is_alpha_zero_beta_one(self):
        nllr = negative_log_likelihood_ratio_loss(LABELS, LOGITS, from_logits=True)
        crl = competing_ratio_loss(LABELS, LOGITS, alpha=0, beta=1, from_logits=True)
        np.testing.assert_allclose(numpy(nllr), numpy(crl))
        p = softmax64(LOGITS)[np.arange(5), LABELS]
        np.testing.assert_allclose(numpy(nllr), -np.log(p / (1 - p)), atol=1e-5)

    def test_alpha_one_is_positive(self):
        z = np.random.default_rng(1).normal(scale=6, size=(64, 7)).astype("float32")
        y = np.random.default_rng(2).integers(0, 7, 64)
        loss = numpy(competing_ratio_loss(y, z, alpha=1.0, beta=1.0, from_logits=True))
        assert (loss >= 0).all()
        assert (numpy(competing_ratio_loss(y, z, from_logits=True)) < 0).any()

    def test_one_hot_equals_integer_labels(self):
        onehot = np.eye(4, dtype="float32")[LABELS]
        for from_logits, pred in ((True, LOGITS), (False, softmax64(LOGITS).astype("float32"))):
            sparse = competing_ratio_loss(LABELS, pred, from_logits=from_logits)
            dense = competing_ratio_loss(onehot, pred, from_logits=from_logits)
            np.testing.assert_allclose(numpy(sparse), numpy(dense), atol=1e-6)
        _, g_sparse = value_and_grad(
            lambda z: competing_ratio_loss(LABELS, z, from_logits=True), LOGITS
        )
        _, g_dense = value_and_grad(
            lambda z: competing_ratio_loss(onehot, z, from_logits=True), LOGITS
        )
        np.testing.assert_allclose(g_sparse, g_dense, atol=1e-6)

    def test_labels_of_shape_n_1(self):
        a = competing_ratio_loss(LABELS[:, None], LOGITS, from_logits=True)
        b = competing_ratio_loss(LABELS, LOGITS, from_logits=True)
        assert tuple(a.shape) == (5,)
        np.testing.assert_allclose(numpy(a), numpy(b))

    def test_soft_targets_are_the_expectation(self):
        rng = np.random.default_rng(3)
        targets = rng.dirichlet(np.ones(4), size=5).astype("float32")
        value, grad = value_and_grad(
            lambda z: competing_ratio_loss(targets, z, beta=0.5, from_logits=True),
            LOGITS,
        )

        def expectation(z):
            p = softmax64(z)
            return (targets * (-np.log(p) + 0.5 * np.log(1 - p))).sum(-1)

        np.testing.assert_allclose(value, expectation(LOGITS), atol=1e-5)
        np.testing.assert_allclose(grad, numeric_grad(expectation, LOGITS), atol=1e-5)

    def test_label_smoothing(self):
        s = 0.2
        smoothed = np.eye(4, dtype="float32")[LABELS] * (1 - s) + s / 4
        for from_logits, pred in ((True, LOGITS), (False, softmax64(LOGITS).astype("float32"))):
            expected = competing_ratio_loss(smoothed, pred, from_logits=from_logits)
            sparse = competing_ratio_loss(LABELS, pred, from_logits=from_logits, label_smoothing=s)
            onehot = competing_ratio_loss(
                np.eye(4, dtype="float32")[LABELS],
                pred,
                from_logits=from_logits,
                label_smoothing=s,
            )
            np.testing.assert_allclose(numpy(sparse), numpy(expected), atol=1e-5)
            np.testing.assert_allclose(numpy(onehot), numpy(expected), atol=1e-5)
        _, g_sparse = value_and_grad(
            lambda z: competing_ratio_loss(LABELS, z, from_logits=True, label_smoothing=s),
            LOGITS,
        )
        _, g_dense = value_and_grad(
            lambda z: competing_ratio_loss(smoothed, z, from_logits=True), LOGITS
        )
        np.testing.assert_allclose(g_sparse, g_dense, atol=1e-5)

    def test_channels_first_dense_prediction(self):
        rng = np.random.default_rng(4)
        logits = rng.normal(size=(2, 5, 3, 3)).astype("float32")  # N, K, H, W
        labels = rng.integers(0, 5, size=(2, 3, 3))
        first = competing_ratio_loss(labels, logits, from_logits=True, axis=1)
        last = competing_ratio_loss(labels, np.moveaxis(logits, 1, -1), from_logits=True)
        assert tuple(first.shape) == (2, 3, 3)
        np.testing.assert_allclose(numpy(first), numpy(last), atol=1e-6)
        onehot = np.moveaxis(np.eye(5, dtype="float32")[labels], -1, 1)
        dense = competing_ratio_loss(onehot, logits, from_logits=True, axis=1)
        np.testing.assert_allclose(numpy(dense), numpy(last), atol=1e-6)
        loss = CompetingRatioLoss(from_logits=True, axis=1)
        np.testing.assert_allclose(
            float(loss(labels[:, None], logits)), numpy(last).mean(), atol=1e-6
        )


# --------------------------------------------------------------------------
# Numerics.


class TestNumerics:
    P_Y = np.array([1e-6, 1e-3, 0.1, 0.5, 0.9, 0.999, 1 - 1e-5, 1 - 1e-6])

    @pytest.mark.parametrize("alpha,beta", [(0.0, 0.25), (0.0, 1.0), (1.0, 1.0), (0.1, 0.5)])
    def test_value_and_gradient_match_formula_in_float32(self, alpha, beta):
        logits = logits_with_p_y(self.P_Y)
        labels = np.full(len(self.P_Y), 3)
        value, grad = value_and_grad(
            lambda z: competing_ratio_loss(labels, z, alpha=alpha, beta=beta, from_logits=True),
            logits,
        )
        expected_value, expected_grad = formula(logits, labels, alpha, beta)
        np.testing.assert_allclose(value, expected_value, rtol=0, atol=1e-5)
        np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=1e-5)

    def test_soft_targets_precise_near_one(self):
        logits = logits_with_p_y(self.P_Y)
        onehot = np.eye(10, dtype="float32")[np.full(len(self.P_Y), 3)]
        value, grad = value_and_grad(
            lambda z: competing_ratio_loss(onehot, z, from_logits=True), logits
        )
        expected_value, expected_grad = formula(logits, np.full(len(self.P_Y), 3), 0.0, 0.25)
        np.testing.assert_allclose(value, expected_value, rtol=0, atol=1e-5)
        np.testing.assert_allclose(grad, expected_grad, rtol=0, atol=1e-5)

    @pytest.mark.parametrize("targets", ["int", "onehot"])
    @pytest.mark.parametrize("from_logits", [False, True], ids=["probs", "logits"])
    def test_float32_matches_float64_oracle(self, from_logits, targets):
        # The promise: float32 value (and gradient) within 1e-5 of the exact
        # loss of the same float32 input for p_y up to 1 - 1e-6, on both
        # paths. From probabilities (a softmax head, the default
        # `from_logits=False`) that needs the competitors' sum: 1 - p_y is
        # off by up to 0.1 there. Two rows are scaled by 1/2: the loss
        # normalises.
        logits = logits_with_p_y(self.P_Y)
        if from_logits:
            pred = logits
        else:
            pred = softmax64(logits).astype("float32")
            pred[[2, 6]] *= 0.5
        labels = np.full(len(self.P_Y), 3)
        y_true = labels if targets == "int" else np.eye(10, dtype="float32")[labels]
        for alpha in (0.0, 0.5, 1.0):
            for beta in (0.25, 0.75, 1.0):
                value, grad = value_and_grad(
                    lambda x, alpha=alpha, beta=beta: competing_ratio_loss(
                        y_true, x, alpha=alpha, beta=beta, from_logits=from_logits
                    ),
                    pred,
                )
                expected_value, expected_grad = crl64(pred, labels, alpha, beta, from_logits)
                where = f"alpha={alpha}, beta={beta}"
                np.testing.assert_allclose(value, expected_value, rtol=0, atol=1e-5, err_msg=where)
                # d/dp_j grows like beta / (1 - p_y) (1e6 here): relative
                # precision is what float32 can give.
                np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-5, err_msg=where)

    def test_one_minus_p_fails_the_oracle_on_probabilities(self):
        # The oracle has teeth: 1 - p_y formed in float32, as the naive
        # probability loss does, misses it by far more than 1e-5.
        probs = softmax64(logits_with_p_y(self.P_Y)).astype("float32")
        p = ops.convert_to_tensor(probs)
        p_y = (p / ops.sum(p, axis=-1, keepdims=True))[:, 3]
        naive = numpy(-ops.log(p_y) + 0.75 * ops.log(1.0 - p_y))
        expected, _ = crl64(probs, np.full(len(self.P_Y), 3), 0.0, 0.75, False)
        assert np.abs(naive - expected).max() > 1e-4

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    @pytest.mark.parametrize("targets", ["int", "onehot"])
    def test_16_bit_probabilities_computed_in_float32(self, dtype, targets):
        # A mixed-precision softmax head: bfloat16 rounds p_y = 0.999 to 1,
        # while the competitors' probabilities survive; the loss must see
        # them summed in float32, and return the input dtype.
        probs = softmax64(logits_with_p_y(self.P_Y)).astype("float32")
        rounded = numpy(ops.cast(ops.cast(probs, dtype), "float32"))
        labels = np.full(len(self.P_Y), 3)
        y_true = labels if targets == "int" else np.eye(10, dtype="float32")[labels]
        out = competing_ratio_loss(y_true, ops.cast(probs, dtype), beta=0.75)
        assert keras.backend.standardize_dtype(out.dtype) == dtype
        expected, _ = crl64(rounded, labels, 0.0, 0.75, False)
        # Computed in float32, the only error is the final rounding to
        # `dtype`: half its spacing (10 or 7 stored mantissa bits). The same
        # computation in 16 bits is off by several spacings.
        mantissa_bits = {"float16": 10, "bfloat16": 7}[dtype]
        spacing = 2.0 ** (np.floor(np.log2(np.abs(expected))) - mantissa_bits)
        error = np.abs(numpy(out) - expected)
        assert np.all(error <= 0.5 * spacing + 1e-5), (error / spacing, numpy(out), expected)

    def test_naive_log_one_minus_p_fails_this_check(self):
        # The check above has teeth: log(1 - softmax) in float32 misses it.
        logits = logits_with_p_y(self.P_Y)
        p = ops.softmax(ops.convert_to_tensor(logits))[:, 3]
        naive = numpy(-ops.log(p) + 0.25 * ops.log(1 - p))
        expected, _ = formula(logits, np.full(len(self.P_Y), 3), 0.0, 0.25)
        assert np.abs(naive - expected).max() > 1e-4

    @pytest.mark.parametrize("targets", ["int", "onehot"])
    def test_clamp_stops_the_push_past_one_minus_epsilon(self, targets):
        logits = logits_with_p_y(np.array([1 - 1e-9]))
        y_true = [3] if targets == "int" else np.eye(10, dtype="float32")[[3]]
        value, grad = value_and_grad(
            lambda z: competing_ratio_loss(y_true, z, alpha=0.0, beta=1.0, from_logits=True),
            logits,
        )
        eps = 1e-7
        np.testing.assert_allclose(value, [-np.log1p(-eps) + np.log(eps)], rtol=1e-6)
        assert np.all(grad == 0)

    @pytest.mark.parametrize("targets", ["int", "onehot"])
    @pytest.mark.parametrize("alpha,beta", [(0.0, 1.0), (1.0, 0.25)])
    def test_probability_clamp_at_both_ends(self, alpha, beta, targets):
        # From probabilities p_y is clipped to [epsilon, 1 - epsilon], as in
        # the authors' code: a sample past either end is frozen at the
        # clamp's value, with zero gradient.
        probs = np.full((2, 10), 1e-10, "float32")
        probs[0, 3] = 1.0  # competing mass 9e-10 < epsilon
        probs[1, 3], probs[1, 0] = 1e-9, 1.0  # p_y = 1e-9 < epsilon
        labels = np.array([3, 3])
        y_true = labels if targets == "int" else np.eye(10, dtype="float32")[labels]
        value, grad = value_and_grad(
            lambda p: competing_ratio_loss(y_true, p, alpha=alpha, beta=beta), probs
        )
        eps = 1e-7
        expected = [
            -np.log1p(-eps) + beta * np.log(alpha + eps),
            -np.log(eps) + beta * np.log(alpha + 1 - eps),
        ]
        np.testing.assert_allclose(value, expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            value, crl64(probs, labels, alpha, beta, False)[0], rtol=0, atol=1e-5
        )
        assert np.all(grad == 0)

    @pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
    @pytest.mark.parametrize("alpha", [0.0, 1.0])
    def test_extreme_logits_stay_finite(self, dtype, alpha):
        logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [0.0, 1e4, 1e4]], "float32")
        labels = np.array([0, 0, 2])
        for targets in (labels, np.eye(3, dtype="float32")[labels]):
            value, grad = value_and_grad(
                lambda z, targets=targets: competing_ratio_loss(
                    targets, ops.cast(z, dtype), alpha=alpha, from_logits=True
                ),
                logits,
            )
            assert np.isfinite(value).all() and np.isfinite(grad).all()
            assert value[1] > 1e3  # the hopeless sample is not clamped away
            assert np.abs(grad[1]).sum() > 1.0
        loss = CompetingRatioLoss(alpha=alpha, from_logits=True, dtype=dtype)
        assert np.isfinite(float(loss(labels, ops.cast(logits, dtype))))

    def test_output_keeps_input_dtype(self):
        for dtype in ("float16", "bfloat16", "float32"):
            out = competing_ratio_loss(LABELS, ops.cast(LOGITS, dtype), from_logits=True)
            assert keras.backend.standardize_dtype(out.dtype) == dtype

    def test_integer_labels_exact_for_large_k_in_bfloat16(self):
        num_classes = 100_000
        logits = np.zeros((2, num_classes), "float32")
        logits[0, 257] = logits[1, 99_999] = 10.0
        labels = np.array([257, 99_999])
        ref = float(CompetingRatioLoss(from_logits=True)(labels, logits))
        for dtype in ("bfloat16", "float16"):
            value = float(CompetingRatioLoss(from_logits=True, dtype=dtype)(labels, logits))
            np.testing.assert_allclose(value, ref, rtol=2e-2)
        # A label rounded to 256 would see a loss near 11.5, not 1.7.
        assert ref < 2.0


@pytest.mark.skipif(BACKEND != "torch", reason="the native PyTorch kernel serves torch only")
class TestNativeTorchKernel:
    """`_torch_kernels` is `_sparse_logits_loss_ops` in native PyTorch: same bits."""

    @pytest.mark.parametrize("alpha,beta", [(0.0, 0.25), (0.0, 1.0), (1.0, 1.0), (0.1, 0.5)])
    def test_same_bits_as_keras_ops(self, alpha, beta):
        rng = np.random.default_rng(7)
        batches = [
            (logits_with_p_y(TestNumerics.P_Y), np.full(len(TestNumerics.P_Y), 3)),
            (rng.normal(size=(64, 100)).astype("float32"), rng.integers(0, 100, 64)),
            (rng.normal(scale=40, size=(32, 7)).astype("float32"), rng.integers(0, 7, 32)),
        ]
        epsilon = 1e-7
        for logits, labels in batches:
            # The public loss, which on torch runs the native kernel...
            value, grad = value_and_grad(
                lambda z, labels=labels: competing_ratio_loss(
                    labels, z, alpha=alpha, beta=beta, from_logits=True, epsilon=epsilon
                ),
                logits,
            )
            # ...and the keras.ops path it stands in for, called directly.
            index = ops.convert_to_tensor(labels[:, None].astype("int32"))
            ops_value, ops_grad = value_and_grad(
                lambda z, index=index: losses_module._sparse_logits_loss_ops(
                    index, z, alpha, beta, epsilon
                ),
                logits,
            )
            np.testing.assert_array_equal(value, ops_value)
            np.testing.assert_array_equal(grad, ops_grad)

    @staticmethod
    def torch_grads(fn, logits, upstream):
        """The loss `fn(z)` and the vector-Jacobian product with `upstream`."""
        import torch

        z = torch.tensor(logits, requires_grad=True)
        value = fn(z)
        value.backward(torch.as_tensor(upstream))
        return value.detach().numpy(), z.grad.numpy()

    @pytest.mark.parametrize("alpha,beta", [(0.0, 0.25), (1.0, 1.0), (0.0, 0.0)])
    def test_vjp_with_a_random_upstream_gradient(self, alpha, beta):
        # Keras' losses pass 1 / batch upstream; a weighted or summed loss
        # passes anything. The kernel's backward scales by it per sample.
        import torch

        rng = np.random.default_rng(3)
        logits = rng.normal(scale=3, size=(32, 10)).astype("float32")
        labels = rng.integers(0, 10, 32)
        upstream = rng.normal(size=32).astype("float32")
        index = torch.as_tensor(labels[:, None])
        from keras_crl import _torch_kernels

        floor = losses_module._floor(1e-7)
        value, grad = self.torch_grads(
            lambda z: _torch_kernels.sparse_logits_loss(index, z, alpha, beta, floor),
            logits,
            upstream,
        )
        ops_value, ops_grad = self.torch_grads(
            lambda z: losses_module._sparse_logits_loss_ops(index, z, alpha, beta, 1e-7),
            logits,
            upstream,
        )
        np.testing.assert_array_equal(value, ops_value)
        np.testing.assert_allclose(grad, ops_grad, rtol=1e-6, atol=1e-7)
        if beta == 0.0:
            # beta = 0 is cross-entropy: its gradient, to float32 rounding.
            ce = torch.nn.functional.cross_entropy
            _, ce_grad = self.torch_grads(
                lambda z: ce(z, torch.as_tensor(labels), reduction="none"), logits, upstream
            )
            np.testing.assert_allclose(grad, ce_grad, rtol=1e-5, atol=1e-7)

    def test_sample_weights_through_the_kernel(self):
        rng = np.random.default_rng(4)
        logits = rng.normal(scale=2, size=(16, 5)).astype("float32")
        labels = rng.integers(0, 5, 16)
        weights = rng.uniform(0, 2, 16).astype("float32")
        weights[:3] = 0.0  # padding, as data.PaddedBatches gives
        loss = CompetingRatioLoss(from_logits=True)
        value, grad = value_and_grad(lambda z: loss(labels, z, sample_weight=weights), logits)
        per_sample, per_sample_grad = value_and_grad(
            lambda z: competing_ratio_loss(labels, z, from_logits=True), logits
        )
        # sum_over_batch_size: the weighted sum over the batch of 16.
        np.testing.assert_allclose(value, (weights * per_sample).sum() / 16, rtol=1e-6)
        np.testing.assert_allclose(
            grad, per_sample_grad * weights[:, None] / 16, rtol=1e-5, atol=1e-8
        )
        assert np.all(grad[:3] == 0.0)

    def test_the_native_kernel_runs(self, monkeypatch):
        from keras_crl import _torch_kernels

        calls = []
        kernel = _torch_kernels.sparse_logits_loss
        monkeypatch.setattr(
            _torch_kernels,
            "sparse_logits_loss",
            lambda *args: calls.append(1) or kernel(*args),
        )
        CompetingRatioLoss(from_logits=True)(LABELS, LOGITS)
        assert calls


# --------------------------------------------------------------------------
# The Loss class: reductions, weights, masks, config.


class TestLossClass:
    def per_sample(self, **kwargs):
        return numpy(competing_ratio_loss(LABELS, LOGITS, from_logits=True, **kwargs))

    def test_reductions(self):
        per_sample = self.per_sample()
        weights = np.array([1.0, 0.0, 2.0, 0.5, 1.0], "float32")
        cases = {
            "sum": (per_sample * weights).sum(),
            "sum_over_batch_size": (per_sample * weights).sum() / 5,
            "mean": (per_sample * weights).sum() / 5,
            "mean_with_sample_weight": (per_sample * weights).sum() / weights.sum(),
            "none": per_sample * weights,
            None: per_sample * weights,
        }
        for reduction, expected in cases.items():
            loss = CompetingRatioLoss(from_logits=True, reduction=reduction)
            value = numpy(loss(LABELS, LOGITS, sample_weight=weights))
            np.testing.assert_allclose(value, expected, rtol=1e-5, err_msg=str(reduction))

    def test_scalar_sample_weight(self):
        loss = CompetingRatioLoss(from_logits=True)
        np.testing.assert_allclose(
            float(loss(LABELS, LOGITS, sample_weight=2.5)),
            2.5 * self.per_sample().mean(),
            rtol=1e-5,
        )

    def test_mask_on_predictions(self):
        from keras_crl._keras_compat import set_keras_mask

        mask = np.array([True, False, True, True, False])
        y_pred = ops.convert_to_tensor(LOGITS)
        set_keras_mask(y_pred, ops.convert_to_tensor(mask))
        value = CompetingRatioLoss(from_logits=True)(LABELS, y_pred)
        np.testing.assert_allclose(float(value), self.per_sample()[mask].mean(), rtol=1e-5)

    def test_ignore_class(self):
        labels = np.array([0, -1, 2, -1, 0])
        value = numpy(competing_ratio_loss(labels, LOGITS, from_logits=True, ignore_class=-1))
        keep = labels != -1
        expected = numpy(competing_ratio_loss(labels[keep], LOGITS[keep], from_logits=True))
        np.testing.assert_allclose(value[keep], expected, atol=1e-5)
        assert np.all(value[~keep] == 0)
        mean = CompetingRatioLoss(from_logits=True, ignore_class=-1)(labels, LOGITS)
        np.testing.assert_allclose(float(mean), expected.mean(), atol=1e-5)
        _, grad = value_and_grad(
            lambda z: competing_ratio_loss(labels, z, from_logits=True, ignore_class=-1),
            LOGITS,
        )
        assert np.all(grad[~keep] == 0) and np.abs(grad[keep]).sum() > 0

    def test_ignore_class_inside_range(self):
        # Segmentation style: the "void" class is a real index.
        value = numpy(competing_ratio_loss(LABELS, LOGITS, from_logits=True, ignore_class=0))
        assert value[0] == 0 and value[4] == 0 and value[1] != 0

    def test_config_matches_constructor(self):
        for cls in (CompetingRatioLoss, NegativeLogLikelihoodRatioLoss):
            params = set(inspect.signature(cls.__init__).parameters) - {"self"}
            assert set(cls().get_config()) == params, cls

    def test_config_round_trip(self):
        loss = CompetingRatioLoss(
            alpha=1.0,
            beta=0.5,
            from_logits=True,
            label_smoothing=0.1,
            ignore_class=-1,
            axis=1,
            epsilon=1e-6,
            reduction="sum",
            name="crl",
            dtype="bfloat16",
        )
        restored = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(restored) is CompetingRatioLoss
        assert restored.get_config() == loss.get_config()
        nllr = NegativeLogLikelihoodRatioLoss(from_logits=True)
        restored = keras.losses.deserialize(keras.losses.serialize(nllr))
        assert type(restored) is NegativeLogLikelihoodRatioLoss
        assert (restored.alpha, restored.beta) == (0.0, 1.0)

    def test_nllr_class(self):
        value = NegativeLogLikelihoodRatioLoss(from_logits=True)(LABELS, LOGITS)
        expected = competing_ratio_loss(LABELS, LOGITS, alpha=0, beta=1, from_logits=True)
        np.testing.assert_allclose(float(value), numpy(expected).mean(), rtol=1e-6)

    def test_mixed_precision_policy_keeps_loss_in_float32(self):
        try:
            keras.config.set_dtype_policy("mixed_bfloat16")
            loss = CompetingRatioLoss(from_logits=True)
            assert loss.dtype == "float32"
        finally:
            keras.config.set_dtype_policy("float32")


# --------------------------------------------------------------------------
# Training and saving through Keras.


def tiny_model(num_classes=4, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(num_classes),
        ]
    )


def tiny_data(n=32, num_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = (x[:, :num_classes].argmax(1)).astype("int32")
    return x, y


class TestWithKeras:
    @pytest.mark.parametrize("labels", ["int", "int_n1", "onehot"])
    def test_compile_and_fit(self, labels):
        x, y = tiny_data()
        targets = {"int": y, "int_n1": y[:, None], "onehot": np.eye(4, dtype="float32")[y]}[labels]
        model = tiny_model()
        model.compile(
            optimizer=keras.optimizers.SGD(0.5),
            loss=CompetingRatioLoss(from_logits=True),
            metrics=["accuracy" if labels == "onehot" else "sparse_categorical_accuracy"],
        )
        history = model.fit(x, targets, epochs=8, batch_size=8, verbose=0)
        losses = history.history["loss"]
        assert np.isfinite(losses).all() and losses[-1] < losses[0]

    def test_class_weight_equals_sample_weight(self):
        x, y = tiny_data()
        class_weight = {0: 1.0, 1: 2.0, 2: 0.5, 3: 0.0}
        weights = []
        for kwargs in (
            {"class_weight": class_weight},
            {"sample_weight": np.array([class_weight[c] for c in y], "float32")},
        ):
            model = tiny_model()
            model.compile(
                optimizer=keras.optimizers.SGD(0.1), loss=CompetingRatioLoss(from_logits=True)
            )
            model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0, **kwargs)
            weights.append([numpy(w) for w in model.weights])
        for a, b in zip(*weights):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

    def test_keras_file_loads_with_safe_mode(self, tmp_path):
        model = tiny_model()
        loss = CompetingRatioLoss(alpha=1.0, beta=0.5, from_logits=True)
        model.compile(optimizer="sgd", loss=loss)
        path = tmp_path / "model.keras"
        model.save(path)
        restored = keras.saving.load_model(path, safe_mode=True)
        assert isinstance(restored.loss, CompetingRatioLoss)
        assert restored.loss.get_config() == loss.get_config()
        x, y = tiny_data(8)
        np.testing.assert_allclose(
            restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-6
        )

    def test_functional_twin_in_compile(self, tmp_path):
        model = tiny_model()
        model.compile(optimizer="sgd", loss=negative_log_likelihood_ratio_loss)
        x, y = tiny_data(8)
        probs_model = keras.Sequential([model, keras.layers.Softmax()])
        probs_model.compile(optimizer="sgd", loss=negative_log_likelihood_ratio_loss)
        assert np.isfinite(probs_model.evaluate(x, y, verbose=0))
        path = tmp_path / "m.keras"
        probs_model.save(path)
        assert keras.saving.load_model(path).loss is negative_log_likelihood_ratio_loss

    def test_mixed_precision_training(self):
        x, y = tiny_data()
        for policy in ("mixed_bfloat16", "mixed_float16"):
            try:
                keras.config.set_dtype_policy(policy)
                model = tiny_model()
                model.compile(
                    optimizer=keras.optimizers.SGD(0.1), loss=CompetingRatioLoss(from_logits=True)
                )
                history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
            finally:
                keras.config.set_dtype_policy("float32")
            assert np.isfinite(history.history["loss"]).all(), policy

    @pytest.mark.skipif(not HAS_XLA, reason="XLA compilation exists on TensorFlow and JAX only")
    def test_jit_compile_fit_matches_eager(self):
        x, y = tiny_data()
        results = []
        for jit in (True, False):
            model = tiny_model()
            with op_determinism_off():
                model.compile(
                    optimizer=keras.optimizers.SGD(0.1),
                    loss=CompetingRatioLoss(from_logits=True, label_smoothing=0.1),
                    jit_compile=jit,
                    run_eagerly=not jit,
                )
                history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
            # XLA ran: Keras' resolved choice, which it turns off with only a warning.
            assert model.jit_compile is jit
            results.append(history.history["loss"])
        np.testing.assert_allclose(results[0], results[1], rtol=1e-5)

    @pytest.mark.skipif(not HAS_XLA, reason="XLA compilation exists on TensorFlow and JAX only")
    def test_xla_value_and_bad_labels_are_nan(self):
        fn = xla(lambda y, z: competing_ratio_loss(y, z, from_logits=True))
        if BACKEND == "tensorflow":  # only a function compiled with XLA has XLA's IR
            assert "HloModule" in fn.experimental_get_compiler_ir(LABELS, LOGITS)(stage="hlo")
        np.testing.assert_allclose(
            numpy(fn(LABELS, LOGITS)),
            numpy(competing_ratio_loss(LABELS, LOGITS, from_logits=True)),
            atol=1e-6,
        )
        value = numpy(fn(np.array([0, 4, -1, 2, 0]), LOGITS))
        assert np.isnan(value[[1, 2]]).all() and np.isfinite(value[[0, 3, 4]]).all()


# --------------------------------------------------------------------------
# Bad input.


class TestBadInput:
    @pytest.mark.parametrize("label", [4, 7, -1, -3])
    def test_label_out_of_range(self, label):
        labels = np.array([0, label, 1, 2, 3])
        with pytest.raises(ValueError, match=rf"label value of {label}.*\[0, 4\)"):
            competing_ratio_loss(labels, LOGITS, from_logits=True)
        with pytest.raises(ValueError, match=str(label)):
            CompetingRatioLoss()(labels, softmax64(LOGITS).astype("float32"))

    def test_ignore_class_is_not_out_of_range(self):
        labels = np.array([0, -1, 1, 2, 3])
        competing_ratio_loss(labels, LOGITS, from_logits=True, ignore_class=-1)
        with pytest.raises(ValueError, match="-5"):
            competing_ratio_loss(
                np.array([0, -5, 1, 2, 3]), LOGITS, from_logits=True, ignore_class=-1
            )

    def test_target_width_mismatch(self):
        with pytest.raises(ValueError, match=r"\(5, 3\).*\(5, 4\)"):
            competing_ratio_loss(
                np.eye(3, dtype="float32")[[0, 1, 2, 0, 1]], LOGITS, from_logits=True
            )

    def test_label_shape_mismatch(self):
        with pytest.raises(ValueError, match=r"\(3,\).*\(5, 4\)"):
            competing_ratio_loss(np.array([0, 1, 2]), LOGITS, from_logits=True)

    def test_rank_mismatch(self):
        with pytest.raises(ValueError, match=r"y_true.shape=\(5, 4, 2\)"):
            competing_ratio_loss(np.zeros((5, 4, 2)), LOGITS, from_logits=True)

    def test_fewer_than_two_classes(self):
        with pytest.raises(ValueError, match="at least 2 classes"):
            competing_ratio_loss(np.zeros(5, "int32"), np.zeros((5, 1), "float32"))

    @pytest.mark.parametrize(
        "kwargs,match",
        [
            ({"alpha": -1}, "Received: alpha=-1"),
            ({"beta": -0.5}, "Received: beta=-0.5"),
            ({"alpha": float("nan")}, "alpha=nan"),
            ({"epsilon": 0.0}, "epsilon=0.0"),
            ({"epsilon": 0.5}, "epsilon=0.5"),
            ({"label_smoothing": 1.0}, "label_smoothing=1.0"),
            ({"label_smoothing": -0.1}, "label_smoothing=-0.1"),
            ({"ignore_class": 1.5}, "ignore_class=1.5"),
            ({"reduction": "avg"}, "reduction=avg"),
        ],
    )
    def test_bad_arguments_at_construction(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            CompetingRatioLoss(**kwargs)

    def test_bad_arguments_in_function(self):
        with pytest.raises(ValueError, match="Received: beta=-1"):
            competing_ratio_loss(LABELS, LOGITS, beta=-1)

    def test_ignore_class_with_soft_targets(self):
        with pytest.raises(ValueError, match="ignore_class"):
            competing_ratio_loss(
                np.eye(4, dtype="float32")[LABELS], LOGITS, ignore_class=0, from_logits=True
            )

    def test_logits_passed_as_probabilities_warn(self):
        with pytest.warns(UserWarning, match="from_logits=True"):
            competing_ratio_loss(LABELS, LOGITS)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            competing_ratio_loss(LABELS, softmax64(LOGITS).astype("float32"))
            competing_ratio_loss(LABELS, LOGITS, from_logits=True)

    def test_softmax_output_passed_as_logits_warns(self):
        probs = keras.activations.softmax(ops.convert_to_tensor(LOGITS))
        if not hasattr(probs, "_keras_logits"):
            # Keras marks a softmax output by setting `_keras_logits` on it
            # (all three pinned backends' arrays take it). An array type that
            # takes no attributes (some JAX versions) leaves nothing to
            # detect; one that does but was not marked is a failure.
            with pytest.raises(AttributeError):
                probs._keras_logits = None
            pytest.skip(
                f"{BACKEND}: {type(probs).__name__} takes no attributes, so Keras "
                "cannot mark a softmax output for the loss to detect"
            )
        with pytest.warns(UserWarning, match="softmax"):
            competing_ratio_loss(LABELS, probs, from_logits=True)
        # A tensor that merely holds probabilities is not flagged: only the mark.
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            competing_ratio_loss(LABELS, softmax64(LOGITS).astype("float32"), from_logits=True)


# --------------------------------------------------------------------------
# The eager checks read values back from CPU tensors only: on an accelerator
# that read would make every training step wait for the device.


def accelerator_tensor():
    """A stand-in that says it is on a GPU, where this backend's tensors say it."""
    if BACKEND == "torch":
        import torch

        return types.SimpleNamespace(device=torch.device("cuda", 0))
    if BACKEND == "tensorflow":
        return types.SimpleNamespace(device="/job:localhost/replica:0/task:0/device:GPU:0")
    return types.SimpleNamespace(devices=lambda: [types.SimpleNamespace(platform="gpu")])


class TestEagerChecksOnTheHostOnly:
    def test_cpu_tensors_are_on_the_host(self):
        assert losses_module._on_host(ops.convert_to_tensor(LOGITS))
        assert losses_module._on_host(ops.convert_to_tensor(LABELS))

    def test_accelerator_tensors_are_not(self):
        assert not losses_module._on_host(accelerator_tensor())

    def test_off_the_host_nothing_is_read_back(self, monkeypatch):
        # As on a GPU: the checks must not read the values (a read raises
        # here), a bad label's loss is NaN as under jit, and logits passed
        # as probabilities go unflagged.
        monkeypatch.setattr(losses_module, "_on_host", lambda x: False)

        def read_back(x):
            raise AssertionError("a device-to-host read")

        monkeypatch.setattr(losses_module.ops, "convert_to_numpy", read_back)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            value = competing_ratio_loss(np.array([0, 4, -1, 2, 0]), LOGITS, from_logits=True)
            competing_ratio_loss(LABELS, LOGITS)
        monkeypatch.undo()
        value = numpy(value)
        assert np.isnan(value[[1, 2]]).all() and np.isfinite(value[[0, 3, 4]]).all()

    @pytest.mark.skipif(BACKEND != "torch", reason="torch's meta device: tensors without values")
    def test_torch_tensors_off_the_cpu_are_never_read(self):
        # Meta tensors have a device that is not the CPU and no values: any
        # read back raises.
        with keras.device("meta"):
            labels = ops.convert_to_tensor(np.array([0, 4, -1, 2, 0]))
            logits = ops.convert_to_tensor(LOGITS)
            assert labels.device.type == logits.device.type == "meta"
            with warnings.catch_warnings():
                warnings.simplefilter("error", UserWarning)
                for from_logits in (True, False):
                    value = CompetingRatioLoss(from_logits=from_logits, reduction=None)(
                        labels, logits
                    )
                    assert value.device.type == "meta" and tuple(value.shape) == (5,)

    def test_pipeline_checks_labels_on_the_host(self):
        from keras_crl.data import BatchPipeline

        x = np.zeros((3, 4, 4, 1), "uint8")
        with pytest.raises(ValueError, match=r"BatchPipeline y: label 3 .*\[0, 3\)"):
            BatchPipeline(x, np.array([0, 3, 1]), 2, mean=[0.5], std=[0.5], num_classes=3)
        BatchPipeline(x, np.array([0, 2, 1]), 2, mean=[0.5], std=[0.5], num_classes=3)
        BatchPipeline(x, np.array([0, 3, 1]), 2, mean=[0.5], std=[0.5])  # no num_classes


def test_dtype_width_reads_the_bits_not_every_digit():
    from keras_crl.losses import _dtype_bits

    # "float8_e4m3fn" once read as 843 bits, so float8 inputs skipped the
    # float32 upcast.
    assert [
        _dtype_bits(d)
        for d in ("float8_e4m3fn", "float8_e5m2", "bfloat16", "float16", "float32", "float64")
    ] == [8, 8, 16, 16, 32, 64]
