"""Every use of Keras' private API, in one place, each with why.

Keras 3 has no public equivalent of these. `tests/test_keras_compat.py`
checks that each still behaves as relied upon, at the Keras the suite pins
(`constraints.txt`), which is also the declared floor (`keras>=3.15`).
"""

import random

import keras
import numpy as np

# A loss's per-sample mask (`ignore_class`) travels on the tensor as Keras'
# own losses do it, so Keras' reductions and metrics see it.
from keras.src.backend import get_keras_mask  # noqa: F401
from keras.src.backend import set_keras_mask  # noqa: F401

# The reduction of `keras.losses.Loss.__call__` (masks, sample weights,
# "sum_over_batch_size", distribution scaling), reused rather than rewritten.
from keras.src.losses.loss import reduce_weighted_values  # noqa: F401


def flatten_layers(model):
    """Every layer inside `model`, nested models' layers included.

    `model.layers` stops at the first level of nesting (a backbone inside a
    model is one layer).
    """
    return list(model._flatten_layers(include_self=False))


def own_variables(layer):
    """The variables `layer` itself created, not its sublayers'.

    The public `layer.weights` includes every sublayer's variables.
    """
    return layer._trainable_variables + layer._non_trainable_variables


def is_softmax_output(x):
    """Whether Keras marked `x` as the output of a softmax activation.

    Keras' own cross-entropy reads the same mark to warn about
    `from_logits=True` on probabilities.
    """
    return hasattr(x, "_keras_logits")


def set_random_seed(seed):
    """`keras.utils.set_random_seed`, without importing TensorFlow on torch or JAX.

    Keras' own seeds TensorFlow whenever it is installed, so every torch or
    JAX process paid TensorFlow's import (seconds, and its C++ start-up log
    lines). This sets the same state: Keras' global seed (its random ops and
    layers draw from it), Python's and NumPy's generators, and torch's.
    """
    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    # Dropped, so that it is made again from the new seed.
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def build_metrics(model, batch):
    """Creates the compiled metrics' variables from one `(x, y)` batch.

    `fit` does it before its first epoch on JAX and torch, but TensorFlow
    (without a distribution strategy) only when it traces the first train
    step: too late to give a resumed epoch its metric totals in
    `on_epoch_begin`. This is the build `fit` does, with the batch's shapes.
    """
    model._symbolic_build(data_batch=batch)
