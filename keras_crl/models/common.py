"""What every zoo family shares: PyTorch's batch-norm defaults, data formats."""

import keras

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
