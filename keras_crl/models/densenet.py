"""DenseNet-121 for 32x32 inputs (CIFAR layout).

Layout of kuangliu/pytorch-cifar: a 3x3 stem conv with `2 * growth_rate`
filters (no 7x7/2 conv, no max-pool), four dense blocks of 6/12/24/16
bottleneck layers, and transitions that halve both channels (reduction 0.5)
and the spatial size. A final BN-ReLU precedes global pooling.

Reference: Huang et al., "Densely Connected Convolutional Networks", 2017.
"""

import keras
from keras import layers

from keras_crl.models.common import BN_EPSILON
from keras_crl.models.common import BN_MOMENTUM
from keras_crl.models.common import logits_head
from keras_crl.models.common import resolve_data_format as _resolve_data_format


def _bn_relu_conv(x, filters, kernel_size, data_format, axis, name):
    x = layers.BatchNormalization(
        axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn"
    )(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name=f"{name}_conv",
    )(x)


def dense_layer(x, growth_rate, data_format, axis, name):
    """BN-ReLU-conv1x1(4g), BN-ReLU-conv3x3(g), concatenated to the input."""
    # The 1x1 "bottleneck" caps the cost of the 3x3 conv whatever the
    # (growing) number of input channels.
    y = _bn_relu_conv(x, 4 * growth_rate, 1, data_format, axis, f"{name}_1")
    y = _bn_relu_conv(y, growth_rate, 3, data_format, axis, f"{name}_2")
    return layers.Concatenate(axis=axis, name=f"{name}_concat")([y, x])


def transition(x, filters, data_format, axis, name):
    """BN-ReLU-conv1x1 to `filters` channels, then 2x2 average pooling."""
    x = _bn_relu_conv(x, filters, 1, data_format, axis, name)
    return layers.AveragePooling2D(2, data_format=data_format, name=f"{name}_pool")(x)


def densenet121(
    num_classes=10,
    input_shape=(32, 32, 3),
    data_format=None,
    growth_rate=32,
    reduction=0.5,
    **kwargs,
):
    """DenseNet-121 (blocks 6-12-24-16) for 32x32 inputs.

    Args:
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        growth_rate: channels added by each dense layer.
        reduction: channel compression factor of the transitions.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Example:

    >>> model = densenet121(num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    data_format, axis = _resolve_data_format(data_format)
    kwargs.setdefault("name", "densenet121")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    channels = 2 * growth_rate
    x = layers.Conv2D(
        channels,
        3,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name="stem_conv",
    )(inputs)
    block_sizes = (6, 12, 24, 16)
    for b, size in enumerate(block_sizes, start=1):
        for i in range(size):
            x = dense_layer(x, growth_rate, data_format, axis, f"block{b}_layer{i + 1}")
            channels += growth_rate
        if b < len(block_sizes):
            channels = int(channels * reduction)
            x = transition(x, channels, data_format, axis, f"transition{b}")
    x = layers.BatchNormalization(
        axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name="final_bn"
    )(x)
    x = layers.Activation("relu", name="final_relu")(x)
    outputs = logits_head(x, num_classes, data_format)
    return keras.Model(inputs, outputs, **kwargs)
