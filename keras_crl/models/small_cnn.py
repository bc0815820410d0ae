"""A small, fast CNN for tests, demos and the 8x8 sklearn digits images."""

import keras
from keras import layers

from keras_crl.models.common import BN_EPSILON
from keras_crl.models.common import BN_MOMENTUM
from keras_crl.models.common import logits_head
from keras_crl.models.common import resolve_data_format as _resolve_data_format


def small_cnn(
    num_classes=10,
    input_shape=(32, 32, 3),
    data_format=None,
    width=32,
    batch_norm=True,
    **kwargs,
):
    """Two conv-BN-ReLU-maxpool stages, global average pooling, dense logits.

    With the default `width=32` the network has about 20k parameters
    (conv `width` then conv `2 * width`). Two 2x2 pools and global pooling
    make it work on any input of at least 4x4, e.g. 8x8x1 digits or
    32x32x3 CIFAR images.

    Args:
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        width: filters of the first conv (the second has twice as many).
        batch_norm: `False`: no batch normalization, the convs have biases
            instead (`keras-crl train --no-batch-norm`). Each example's output
            then depends on that example alone, so data split over processes
            or devices trains exactly as one batch, also where each process
            normalizes its own share (torch).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Example:

    >>> model = small_cnn(num_classes=10, input_shape=(8, 8, 1))
    >>> model.compile(optimizer="adam",
    ...     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    """
    data_format, axis = _resolve_data_format(data_format)
    kwargs.setdefault("name", "small_cnn")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    for i, filters in enumerate((width, 2 * width), start=1):
        # No conv bias before BN: the BN provides the shift.
        x = layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=not batch_norm,
            data_format=data_format,
            name=f"conv{i}",
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(
                axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"bn{i}"
            )(x)
        x = layers.Activation("relu", name=f"relu{i}")(x)
        x = layers.MaxPooling2D(2, data_format=data_format, name=f"pool{i}")(x)
    outputs = logits_head(x, num_classes, data_format)
    return keras.Model(inputs, outputs, **kwargs)
