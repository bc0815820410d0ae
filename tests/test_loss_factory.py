"""The study's baselines differ from what they are compared with, by effect.

A study of "CE + label smoothing against CE" means nothing if the smoothing
never reaches the loss. Each baseline is built as training builds it (the
study's variant -> TrainConfig -> config_loss) and its loss value and
gradient on one batch are compared with its reference's, on every backend.
"""

import numpy as np
import pytest

from keras_crl.config import TrainConfig
from keras_crl.config import config_loss
from keras_crl.loss_factory import make_loss
from keras_crl.study.variants import COMPARED
from tests.backend_utils import value_and_grad

LOGITS = np.array([[2.0, 0.5, -1.0, 0.1], [0.3, 1.5, 0.2, -0.4], [-0.2, 0.1, 0.9, 2.2]], "float32")
LABELS = np.array([0, 1, 3])
BY_NAME = {v.name: v for v in COMPARED}


def trained_loss(variant):
    """The loss `train()` compiles for a study variant."""
    return config_loss(TrainConfig(**variant.train_fields()))


def value_grad(loss):
    value, grad = value_and_grad(lambda logits: loss.call(LABELS, logits), LOGITS)
    return np.asarray(value, np.float64), np.asarray(grad, np.float64)


@pytest.mark.parametrize(
    "variant, reference",
    [("ce-ls0.1", "ce"), ("focal-gamma2", "ce"), ("crl-a0-b0.25-ls0.1", "crl-a0-b0.25")],
)
def test_a_baseline_changes_the_loss_and_its_gradient(variant, reference):
    assert {variant, reference} <= set(BY_NAME), sorted(BY_NAME)
    value, grad = value_grad(trained_loss(BY_NAME[variant]))
    ref_value, ref_grad = value_grad(trained_loss(BY_NAME[reference]))
    assert np.abs(value - ref_value).max() > 1e-3, (value, ref_value)
    assert np.abs(grad - ref_grad).max() > 1e-3


def test_training_builds_the_same_loss_as_make_loss():
    # The study's options reach make_loss unchanged (label smoothing, gamma).
    for v in COMPARED:
        built = make_loss(
            v.loss,
            alpha=v.alpha,
            beta=v.beta,
            label_smoothing=v.label_smoothing,
            options=dict(v.options),
        )
        np.testing.assert_allclose(
            value_grad(trained_loss(v))[0], value_grad(built)[0], rtol=1e-6, err_msg=v.name
        )


def test_focal_gamma_reaches_the_loss():
    # Keras' focal loss at gamma 0 and alpha 1 is cross-entropy; gamma 2
    # (the study's) weighs each example down by (1 - p_y)^2.
    ce, _ = value_grad(make_loss("ce"))
    plain, _ = value_grad(make_loss("focal", options={"gamma": 0.0, "alpha": 1.0}))
    np.testing.assert_allclose(plain, ce, rtol=1e-5)
    focal, _ = value_grad(make_loss("focal", options={"gamma": 2.0, "alpha": 1.0}))
    assert np.all(focal < 0.9 * ce)
