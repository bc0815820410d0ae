"""ResNet-18/34/50/101/152 for 32x32 inputs (CIFAR layout).

The layout follows the widely used kuangliu/pytorch-cifar networks: a 3x3
stem convolution with stride 1 and no max-pool (a 7x7/2 stem plus pooling
would throw away most of a 32x32 image), four stages of 64/128/256/512
filters with strides 1, 2, 2, 2, global average pooling and one dense layer.

Reference: He et al., "Deep Residual Learning for Image Recognition", 2016.
"""

import keras
from keras import layers

from keras_crl.models.common import BN_EPSILON
from keras_crl.models.common import BN_MOMENTUM
from keras_crl.models.common import logits_head
from keras_crl.models.common import resolve_data_format as _resolve_data_format


def _conv_bn(x, filters, kernel_size, strides, data_format, axis, name):
    # No conv bias: the BatchNormalization right after it has its own shift.
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        data_format=data_format,
        name=f"{name}_conv",
    )(x)
    return layers.BatchNormalization(
        axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"{name}_bn"
    )(x)


def _shortcut(x, filters, strides, data_format, axis, name):
    # Identity when the shape is unchanged, else a 1x1 projection (+BN).
    if strides == 1 and x.shape[axis] == filters:
        return x
    return _conv_bn(x, filters, 1, strides, data_format, axis, f"{name}_short")


def basic_block(x, filters, strides, data_format, axis, name):
    """Two 3x3 convolutions plus a shortcut (ResNet-18/34 block)."""
    shortcut = _shortcut(x, filters, strides, data_format, axis, name)
    y = _conv_bn(x, filters, 3, strides, data_format, axis, f"{name}_1")
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = _conv_bn(y, filters, 3, 1, data_format, axis, f"{name}_2")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def bottleneck_block(x, filters, strides, data_format, axis, name):
    """1x1 reduce, 3x3, 1x1 expand (x4) plus a shortcut (ResNet-50+ block)."""
    shortcut = _shortcut(x, 4 * filters, strides, data_format, axis, name)
    y = _conv_bn(x, filters, 1, 1, data_format, axis, f"{name}_1")
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    # The stride sits on the 3x3 conv, like torchvision / kuangliu ("ResNet
    # v1.5"), not on the first 1x1 as in the original paper.
    y = _conv_bn(y, filters, 3, strides, data_format, axis, f"{name}_2")
    y = layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = _conv_bn(y, 4 * filters, 1, 1, data_format, axis, f"{name}_3")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def build_resnet(
    block,
    num_blocks,
    num_classes=10,
    input_shape=(32, 32, 3),
    data_format=None,
    **kwargs,
):
    """Builds a CIFAR-style ResNet.

    Args:
        block: `basic_block` or `bottleneck_block`.
        num_blocks: number of blocks in each of the four stages.
        num_classes: number of output logits.
        input_shape: shape of one image, `(H, W, C)` for channels_last or
            `(C, H, W)` for channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None` for
            `keras.config.image_data_format()`.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).
    """
    data_format, axis = _resolve_data_format(data_format)
    kwargs.setdefault("name", "resnet")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = _conv_bn(inputs, 64, 3, 1, data_format, axis, "stem")
    x = layers.Activation("relu", name="stem_relu")(x)
    for stage, (filters, blocks, strides) in enumerate(
        zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2)), start=1
    ):
        for i in range(blocks):
            x = block(
                x,
                filters,
                strides if i == 0 else 1,
                data_format,
                axis,
                name=f"stage{stage}_block{i + 1}",
            )
    outputs = logits_head(x, num_classes, data_format)
    return keras.Model(inputs, outputs, **kwargs)


def resnet18(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """ResNet-18 (basic blocks 2-2-2-2); 11,173,962 trainable params for 10 classes.

    Args:
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A `keras.Model` returning logits.

    Example:

    >>> model = resnet18(num_classes=10)
    >>> model.compile(optimizer="sgd",
    ...     loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    """
    kwargs.setdefault("name", "resnet18")
    return build_resnet(basic_block, (2, 2, 2, 2), num_classes, input_shape, data_format, **kwargs)


def resnet34(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """ResNet-34 (basic blocks 3-4-6-3); 21,282,122 trainable params for 10 classes.

    Arguments and return value as in `resnet18`.

    Example:

    >>> model = resnet34(num_classes=100)
    """
    kwargs.setdefault("name", "resnet34")
    return build_resnet(basic_block, (3, 4, 6, 3), num_classes, input_shape, data_format, **kwargs)


def resnet50(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """ResNet-50 (bottleneck blocks 3-4-6-3).

    Arguments and return value as in `resnet18`.

    Example:

    >>> model = resnet50(num_classes=100)
    """
    kwargs.setdefault("name", "resnet50")
    return build_resnet(
        bottleneck_block, (3, 4, 6, 3), num_classes, input_shape, data_format, **kwargs
    )


def resnet101(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """ResNet-101 (bottleneck blocks 3-4-23-3).

    Arguments and return value as in `resnet18`.

    Example:

    >>> model = resnet101(num_classes=100)
    """
    kwargs.setdefault("name", "resnet101")
    return build_resnet(
        bottleneck_block, (3, 4, 23, 3), num_classes, input_shape, data_format, **kwargs
    )


def resnet152(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """ResNet-152 (bottleneck blocks 3-8-36-3).

    Arguments and return value as in `resnet18`.

    Example:

    >>> model = resnet152(num_classes=100)
    """
    kwargs.setdefault("name", "resnet152")
    return build_resnet(
        bottleneck_block, (3, 8, 36, 3), num_classes, input_shape, data_format, **kwargs
    )
