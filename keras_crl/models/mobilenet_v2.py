"""MobileNetV2 for 32x32 inputs (CIFAR strides).

Layout of kuangliu/pytorch-cifar: the stem conv and the second stage use
stride 1 instead of 2, so a 32x32 image is only downsampled 8x (to 4x4)
rather than 32x. Also as there, activations are plain ReLU, every block has
its 1x1 expansion conv (even with expansion 1), and stride-1 blocks whose
width changes get a 1x1 conv + BN shortcut. Stride-2 blocks have no
residual connection.

Reference: Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", 2018.
"""

import keras
from keras import layers

from keras_crl.models.common import BN_EPSILON
from keras_crl.models.common import BN_MOMENTUM
from keras_crl.models.common import logits_head
from keras_crl.models.common import resolve_data_format as _resolve_data_format

# (expansion, out_channels, num_blocks, stride of the first block)
CIFAR_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),  # stride 2 in the ImageNet network
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _bn(axis, name):
    return layers.BatchNormalization(axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def _pointwise(filters, data_format, name):
    return layers.Conv2D(filters, 1, use_bias=False, data_format=data_format, name=name)


def inverted_residual(x, expansion, filters, strides, data_format, axis, name):
    """Expand (1x1), depthwise 3x3, linear projection (1x1), plus shortcut."""
    in_channels = x.shape[axis]
    y = _pointwise(expansion * in_channels, data_format, f"{name}_expand_conv")(x)
    y = _bn(axis, f"{name}_expand_bn")(y)
    y = layers.Activation("relu", name=f"{name}_expand_relu")(y)
    y = layers.DepthwiseConv2D(
        3,
        strides=strides,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name=f"{name}_dw_conv",
    )(y)
    y = _bn(axis, f"{name}_dw_bn")(y)
    y = layers.Activation("relu", name=f"{name}_dw_relu")(y)
    # No ReLU after the projection: the bottleneck is kept linear so the
    # narrow representation does not lose information.
    y = _pointwise(filters, data_format, f"{name}_project_conv")(y)
    y = _bn(axis, f"{name}_project_bn")(y)
    if strides != 1:
        return y
    if in_channels == filters:
        shortcut = x
    else:
        shortcut = _pointwise(filters, data_format, f"{name}_short_conv")(x)
        shortcut = _bn(axis, f"{name}_short_bn")(shortcut)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def mobilenet_v2(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """MobileNetV2 (width 1.0) with CIFAR strides.

    Args:
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Example:

    >>> model = mobilenet_v2(num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    data_format, axis = _resolve_data_format(data_format)
    kwargs.setdefault("name", "mobilenet_v2")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Conv2D(
        32,
        3,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name="stem_conv",
    )(inputs)
    x = _bn(axis, "stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for stage, (expansion, filters, blocks, strides) in enumerate(CIFAR_CONFIG, start=1):
        for i in range(blocks):
            x = inverted_residual(
                x,
                expansion,
                filters,
                strides if i == 0 else 1,
                data_format,
                axis,
                name=f"stage{stage}_block{i + 1}",
            )
    x = _pointwise(1280, data_format, "head_conv")(x)
    x = _bn(axis, "head_bn")(x)
    x = layers.Activation("relu", name="head_relu")(x)
    outputs = logits_head(x, num_classes, data_format)
    return keras.Model(inputs, outputs, **kwargs)
