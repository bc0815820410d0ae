"""The losses `train()` builds by name: `make_loss` and `OneHotTargets`.

A name is one of the built-in losses (`crl`, `nllr`, `ce`, `focal`) or a user
loss given as its import path, `package.module:Class`. Every loss takes the
zoo's logits and the data sets' integer labels.
"""

import importlib
import inspect

import keras
import numpy as np

from keras_crl.losses import CompetingRatioLoss
from keras_crl.losses import NegativeLogLikelihoodRatioLoss

LOSSES = ("crl", "nllr", "ce", "focal")

__all__ = ["LOSSES", "OneHotTargets", "check_loss", "make_loss"]


def make_loss(name, alpha=0.0, beta=0.25, label_smoothing=0.0, options=None):
    """The named loss, on the zoo's logits and the data's integer labels.

    Args:
        name: `"crl"`, `"nllr"`, `"ce"` (CRL with `beta = 0`, with the same
            label handling), `"focal"` (Keras' `CategoricalFocalCrossentropy`)
            or a user loss `"package.module:Class"`: a `keras.losses.Loss`
            subclass or any class whose instances are called as
            `loss(y_true, y_pred)`. It is built with `options` as keyword
            arguments, plus `from_logits=True` when its constructor takes
            `from_logits` and `options` do not set it.
        alpha, beta: CRL's parameters.
        label_smoothing: Label smoothing (built-in losses).
        options: Keyword arguments of `"focal"` (e.g. `gamma`) or of the
            user loss. `one_hot=True` (user losses) feeds it one-hot targets
            instead of integer labels; focal always gets one-hot targets.

    Returns:
        A loss for `model.compile`.

    Raises:
        ValueError: An unknown name, a module or class that cannot be
            imported, or options the loss does not accept, naming them.
    """
    options = dict(options or {})
    if name == "crl":
        return CompetingRatioLoss(
            alpha=alpha, beta=beta, from_logits=True, label_smoothing=label_smoothing
        )
    if name == "nllr":
        return NegativeLogLikelihoodRatioLoss(from_logits=True, label_smoothing=label_smoothing)
    if name == "ce":
        # CRL with beta = 0 is cross-entropy, with the same label handling
        # (integer labels and label smoothing) as the other two.
        return CompetingRatioLoss(
            beta=0.0,
            from_logits=True,
            label_smoothing=label_smoothing,
            name="cross_entropy",
        )
    if name == "focal":
        return OneHotTargets(
            _construct(
                "focal",
                keras.losses.CategoricalFocalCrossentropy,
                {"from_logits": True, "label_smoothing": label_smoothing, **options},
            )
        )
    if ":" not in name:
        raise ValueError(
            f"Unknown loss {name!r}. Valid losses: {', '.join(LOSSES)}, or a user loss "
            "as package.module:Class."
        )
    one_hot = options.pop("one_hot", False)
    cls = _import_loss(name)
    try:
        takes_from_logits = "from_logits" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        takes_from_logits = False
    if takes_from_logits:
        options.setdefault("from_logits", True)
    loss = _construct(name, cls, options)
    return OneHotTargets(loss) if one_hot else loss


def _import_loss(path):
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"Cannot import the loss {path!r}: {error}") from None
    if not hasattr(module, attribute):
        raise ValueError(f"Module {module_name!r} has no {attribute!r} (loss {path!r}).")
    return getattr(module, attribute)


def _construct(name, cls, options):
    try:
        return cls(**options)
    except (TypeError, ValueError) as error:
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ValueError(f"The loss {name} does not accept ({shown}): {error}") from None


def check_loss(loss, name):
    """Calls `loss` on a tiny batch, as training will, so a loss that cannot
    take the zoo's logits and the data's integer labels fails before any
    run starts, naming it."""
    logits = keras.ops.convert_to_tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = keras.ops.convert_to_tensor([0, 2])
    try:
        value = float(keras.ops.convert_to_numpy(loss(labels, logits)))
    except Exception as error:
        raise ValueError(
            f"The loss {name} fails on integer labels of shape (2,) with logits of shape "
            f"(2, 3), which is what training feeds it ({type(error).__name__}: {error}). "
            "Give it one_hot=True if it needs one-hot targets."
        ) from None
    if not np.isfinite(value):
        raise ValueError(f"The loss {name} gives {value} on a tiny batch of logits.")


class OneHotTargets(keras.losses.Loss):
    """Feeds `loss`, a loss that wants one-hot targets, integer labels.

    Args:
        loss: A `keras.losses.Loss` (its per-sample `call` and reduction are
            used) or a function of `(targets, y_pred)`.

    Example:

    >>> loss = OneHotTargets(keras.losses.CategoricalCrossentropy(from_logits=True))
    >>> round(float(loss([0], [[2.0, 0.0]])), 4)  # log(1 + exp(-2))
    0.1269
    """

    def __init__(self, loss):
        super().__init__(
            name=getattr(loss, "name", None) or "one_hot_targets",
            reduction=getattr(loss, "reduction", "sum_over_batch_size"),
        )
        self.loss = loss

    def call(self, y_true, y_pred):
        y_pred = keras.ops.convert_to_tensor(y_pred)
        labels = keras.ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = keras.ops.squeeze(labels, -1)
        targets = keras.ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        per_sample = self.loss.call if isinstance(self.loss, keras.losses.Loss) else self.loss
        return per_sample(targets, y_pred)
