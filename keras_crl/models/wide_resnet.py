"""Wide ResNet (WRN-d-k) for 32x32 inputs, with WRN-28-10 as the default.

Pre-activation blocks (BN-ReLU-conv3x3, BN-ReLU-[dropout]-conv3x3) in three
groups of `(depth - 4) / 6` blocks with widths 16k, 32k, 64k and strides 1,
2, 2, after a 3x3 stem conv with 16 filters. When the width or stride
changes, the shortcut is a 1x1 conv of the pre-activated input. A final
BN-ReLU precedes global average pooling. WRN-28-10 for 10 classes has
36,479,194 trainable parameters.

Reference: Zagoruyko & Komodakis, "Wide Residual Networks", 2016.
"""

import keras
from keras import layers

from keras_crl.models.common import BN_EPSILON
from keras_crl.models.common import BN_MOMENTUM
from keras_crl.models.common import logits_head
from keras_crl.models.common import resolve_data_format as _resolve_data_format


def _bn_relu(x, axis, name):
    x = layers.BatchNormalization(
        axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn"
    )(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _conv(filters, kernel_size, strides, data_format, name):
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name=name,
    )


def wide_block(x, filters, strides, dropout, data_format, axis, name):
    """Pre-activation basic block with optional dropout between the convs."""
    pre = _bn_relu(x, axis, f"{name}_1")
    if strides != 1 or x.shape[axis] != filters:
        shortcut = _conv(filters, 1, strides, data_format, f"{name}_short_conv")(pre)
    else:
        shortcut = x
    y = _conv(filters, 3, strides, data_format, f"{name}_1_conv")(pre)
    y = _bn_relu(y, axis, f"{name}_2")
    if dropout > 0:
        y = layers.Dropout(dropout, name=f"{name}_dropout")(y)
    y = _conv(filters, 3, 1, data_format, f"{name}_2_conv")(y)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def build_wide_resnet(
    depth=28,
    width=10,
    num_classes=10,
    input_shape=(32, 32, 3),
    data_format=None,
    dropout=0.0,
    **kwargs,
):
    """Builds WRN-`depth`-`width`.

    Args:
        depth: total depth; `(depth - 4)` must be divisible by 6.
        width: widening factor `k`.
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        dropout: dropout rate inside each block (the paper uses 0.3 on
            CIFAR; 0.0 disables it).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).
    """
    if (depth - 4) % 6 != 0:
        raise ValueError(f"WideResNet depth must be 6n + 4, got {depth}")
    data_format, axis = _resolve_data_format(data_format)
    kwargs.setdefault("name", f"wide_resnet{depth}_{width}")
    blocks = (depth - 4) // 6
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _conv(16, 3, 1, data_format, "stem_conv")(inputs)
    for group, (filters, strides) in enumerate(
        zip((16 * width, 32 * width, 64 * width), (1, 2, 2)), start=1
    ):
        for i in range(blocks):
            x = wide_block(
                x,
                filters,
                strides if i == 0 else 1,
                dropout,
                data_format,
                axis,
                name=f"group{group}_block{i + 1}",
            )
    x = _bn_relu(x, axis, "final")
    outputs = logits_head(x, num_classes, data_format)
    return keras.Model(inputs, outputs, **kwargs)


def wide_resnet28_10(
    num_classes=10, input_shape=(32, 32, 3), data_format=None, dropout=0.0, **kwargs
):
    """WRN-28-10: 4 blocks per group, widths 160/320/640.

    Args:
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        dropout: dropout rate inside each block (default 0.0: none).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Example:

    >>> model = wide_resnet28_10(num_classes=100, dropout=0.3)
    >>> model.output_shape
    (None, 100)
    """
    return build_wide_resnet(
        28, 10, num_classes, input_shape, data_format, dropout=dropout, **kwargs
    )
