"""What every zoo family shares: PyTorch's batch-norm defaults, data formats, the head."""

import keras
from keras import layers

# PyTorch's BatchNorm2d defaults (its momentum 0.1 is 0.9 in Keras' terms,
# eps 1e-5): keeping them makes training curves comparable with the PyTorch
# reference models.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def resolve_data_format(data_format):
    """Returns `(data_format, channel_axis)`; `None` means the global default."""
    if data_format is None:
        data_format = keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}"
        )
    return data_format, (1 if data_format == "channels_first" else -1)


def logits_head(x, num_classes, data_format="channels_last", pool=True, dropout=0.0):
    """Every zoo model's head: global average pooling, dropout, dense logits.

    Args:
        x: The backbone's output (a feature map, or features if `pool=False`).
        num_classes: Number of logits.
        data_format: The layout of `x`.
        pool: Whether `x` still needs global average pooling.
        dropout: Dropout rate before the dense layer (0: none).

    Returns:
        The logits (no softmax).
    """
    if pool:
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(num_classes, name="logits")(x)


def head_variables(model):
    """The paths of the head's trainable variables: the `logits` layer's.

    What `Recipe.backbone_lr_scale` leaves at the full learning rate; a
    model without a `logits` layer has its last layer as head.

    Example:

    >>> from keras_crl.models import get_model
    >>> head_variables(get_model("small_cnn", num_classes=3, input_shape=(8, 8, 1)))
    ['logits/kernel', 'logits/bias']
    """
    names = [layer.name for layer in model.layers]
    head = model.get_layer("logits") if "logits" in names else model.layers[-1]
    return [v.path for v in head.trainable_variables]
