"""Pre-activation ResNet-18 for 32x32 inputs (CIFAR layout).

Each block runs BN -> ReLU -> conv twice and adds the shortcut without a
final activation, so the identity path stays clean from input to output.
As in kuangliu/pytorch-cifar, the projection shortcut is a bare 1x1 conv
taken from the pre-activated input, and there is no extra BN-ReLU before the
pooling (the counts then match that reference: 11,171,146 for 10 classes).

Reference: He et al., "Identity Mappings in Deep Residual Networks", 2016.
"""

import keras
from keras import layers

from keras_crl.models.common import BN_EPSILON
from keras_crl.models.common import BN_MOMENTUM
from keras_crl.models.common import logits_head
from keras_crl.models.common import resolve_data_format as _resolve_data_format


def _conv(filters, kernel_size, strides, data_format, name):
    # No bias: every conv here feeds a BatchNormalization (or the sum that
    # the next block normalises).
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name=name,
    )


def preact_block(x, filters, strides, data_format, axis, name):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus shortcut."""
    y = layers.BatchNormalization(
        axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_1_bn"
    )(x)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    if strides != 1 or x.shape[axis] != filters:
        shortcut = _conv(filters, 1, strides, data_format, f"{name}_short_conv")(y)
    else:
        shortcut = x
    y = _conv(filters, 3, strides, data_format, f"{name}_1_conv")(y)
    y = layers.BatchNormalization(
        axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_2_bn"
    )(y)
    y = layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = _conv(filters, 3, 1, data_format, f"{name}_2_conv")(y)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def preact_resnet18(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """PreAct-ResNet-18 (blocks 2-2-2-2, widths 64/128/256/512).

    Args:
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Example:

    >>> model = preact_resnet18(num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    data_format, axis = _resolve_data_format(data_format)
    kwargs.setdefault("name", "preact_resnet18")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _conv(64, 3, 1, data_format, "stem_conv")(inputs)
    for stage, (filters, strides) in enumerate(zip((64, 128, 256, 512), (1, 2, 2, 2)), start=1):
        for i in range(2):
            x = preact_block(
                x,
                filters,
                strides if i == 0 else 1,
                data_format,
                axis,
                name=f"stage{stage}_block{i + 1}",
            )
    outputs = logits_head(x, num_classes, data_format)
    return keras.Model(inputs, outputs, **kwargs)
