"""VGG-11/13/16/19 with batch normalisation, for 32x32 inputs.

Each convolution is 3x3 "same" with a bias (as in kuangliu/pytorch-cifar)
followed by BN and ReLU; every "M" is a 2x2 max-pool. Five pools bring a
32x32 image down to 1x1x512, which feeds a single dense layer.

Reference: Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", 2015.
"""

import keras
from keras import layers

from keras_crl.models.common import BN_EPSILON
from keras_crl.models.common import BN_MOMENTUM
from keras_crl.models.common import logits_head
from keras_crl.models.common import resolve_data_format as _resolve_data_format

# Numbers are conv filters, "M" a max-pool.
VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (
        64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M",
    ),
    "vgg16": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
        512, 512, 512, "M", 512, 512, 512, "M",
    ),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}  # fmt: skip


def build_vgg(config, num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """Builds a VGG-BN network from a config such as `VGG_CONFIGS["vgg16"]`.

    Args:
        config: sequence of conv widths and `"M"` (max-pool) markers.
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first. The
            five pools need at least 32x32.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).
    """
    data_format, axis = _resolve_data_format(data_format)
    kwargs.setdefault("name", "vgg")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = inputs
    conv_id = pool_id = 0
    for item in config:
        if item == "M":
            pool_id += 1
            x = layers.MaxPooling2D(2, data_format=data_format, name=f"pool{pool_id}")(x)
            continue
        conv_id += 1
        x = layers.Conv2D(item, 3, padding="same", data_format=data_format, name=f"conv{conv_id}")(
            x
        )
        x = layers.BatchNormalization(
            axis=axis, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"bn{conv_id}"
        )(x)
        x = layers.Activation("relu", name=f"relu{conv_id}")(x)
    # At 32x32 the map is 1x1 here, so this equals the reference's flatten;
    # pooling also keeps the head at 512 features for larger inputs.
    outputs = logits_head(x, num_classes, data_format)
    return keras.Model(inputs, outputs, **kwargs)


def vgg11(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """VGG-11 with batch norm for 32x32 inputs.

    Args:
        num_classes: number of output logits.
        input_shape: `(H, W, C)`, or `(C, H, W)` with channels_first.
        data_format: `"channels_last"`, `"channels_first"` or `None`
            (use `keras.config.image_data_format()`).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Example:

    >>> model = vgg11(num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    kwargs.setdefault("name", "vgg11")
    return build_vgg(VGG_CONFIGS["vgg11"], num_classes, input_shape, data_format, **kwargs)


def vgg13(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """VGG-13 with batch norm for 32x32 inputs.

    Arguments and return value as in `vgg11`.

    Example:

    >>> model = vgg13(num_classes=100)
    """
    kwargs.setdefault("name", "vgg13")
    return build_vgg(VGG_CONFIGS["vgg13"], num_classes, input_shape, data_format, **kwargs)


def vgg16(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """VGG-16 with batch norm for 32x32 inputs.

    Arguments and return value as in `vgg11`.

    Example:

    >>> model = vgg16(num_classes=100)
    """
    kwargs.setdefault("name", "vgg16")
    return build_vgg(VGG_CONFIGS["vgg16"], num_classes, input_shape, data_format, **kwargs)


def vgg19(num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """VGG-19 with batch norm for 32x32 inputs.

    Arguments and return value as in `vgg11`.

    Example:

    >>> model = vgg19(num_classes=100)
    """
    kwargs.setdefault("name", "vgg19")
    return build_vgg(VGG_CONFIGS["vgg19"], num_classes, input_shape, data_format, **kwargs)
