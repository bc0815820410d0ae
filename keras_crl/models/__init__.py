"""Model zoo: CIFAR-style networks and ImageNet backbones, all returning logits.

Example:

>>> from keras_crl.models import get_model, list_models
>>> model = get_model("resnet18", num_classes=10)
>>> "small_cnn" in list_models()
True
"""

import keras

from keras_crl.models.applications import APPLICATIONS
from keras_crl.models.applications import KERAS_HUB_IMAGENET
from keras_crl.models.applications import KERAS_HUB_RESNETS
from keras_crl.models.applications import application_model
from keras_crl.models.applications import keras_cv_backbone_model
from keras_crl.models.applications import keras_hub_backbone_model
from keras_crl.models.common import head_variables
from keras_crl.models.densenet import densenet121
from keras_crl.models.mobilenet_v2 import mobilenet_v2
from keras_crl.models.preact_resnet import preact_resnet18
from keras_crl.models.resnet import resnet18
from keras_crl.models.resnet import resnet34
from keras_crl.models.resnet import resnet50
from keras_crl.models.resnet import resnet101
from keras_crl.models.resnet import resnet152
from keras_crl.models.small_cnn import small_cnn
from keras_crl.models.vgg import vgg11
from keras_crl.models.vgg import vgg13
from keras_crl.models.vgg import vgg16
from keras_crl.models.vgg import vgg19
from keras_crl.models.wide_resnet import wide_resnet28_10

# Prefixes of the `keras.applications` and keras-hub entries in the registry.
APP_PREFIX = "keras_app_"
HUB_PREFIX = "keras_hub_"

MODELS = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "preact_resnet18": preact_resnet18,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "densenet121": densenet121,
    "mobilenet_v2": mobilenet_v2,
    "wide_resnet28_10": wide_resnet28_10,
    "small_cnn": small_cnn,
}


def list_models():
    """Returns the sorted names accepted by `get_model`.

    Returns:
        A sorted list of strings: the CIFAR zoo (e.g. `"resnet18"`), the
        `keras.applications` backbones prefixed `"keras_app_"` and the
        keras-hub ResNets prefixed `"keras_hub_"` (optional extra
        `keras-crl[keras-hub]`).
    """
    return sorted(
        list(MODELS)
        + [APP_PREFIX + name for name in APPLICATIONS]
        + [HUB_PREFIX + name for name in KERAS_HUB_RESNETS]
    )


def get_model(name, num_classes=10, input_shape=(32, 32, 3), data_format=None, **kwargs):
    """Builds a model of the zoo by name.

    Args:
        name: one of `list_models()`.
        num_classes: number of output logits.
        input_shape: shape of one image, `(H, W, C)` or, with
            channels_first, `(C, H, W)`.
        data_format: `"channels_last"`, `"channels_first"` or `None` for
            `keras.config.image_data_format()`. The `keras_app_` models
            always use the global setting (`keras.config.
            set_image_data_format`), so another value raises ValueError.
        **kwargs: model-specific options (e.g. `dropout` for
            `wide_resnet28_10` and the `keras_hub_` models, `weights` for
            the `keras_app_` and `keras_hub_` models, `freeze_backbone` for
            the `keras_app_` models) and `keras.Model`
            arguments such as `name`.

    Returns:
        A `keras.Model` returning logits (use `from_logits=True` losses).

    Raises:
        ValueError: for an unknown name (the message lists valid names).

    Example:

    >>> model = get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    >>> model.output_shape
    (None, 10)
    """
    if name in MODELS:
        return MODELS[name](
            num_classes=num_classes,
            input_shape=input_shape,
            data_format=data_format,
            **kwargs,
        )
    if name.startswith(APP_PREFIX) and name[len(APP_PREFIX) :] in APPLICATIONS:
        global_format = keras.config.image_data_format()
        if data_format is not None and data_format != global_format:
            raise ValueError(
                f"{name} follows keras.config.image_data_format() "
                f"({global_format!r}); got data_format={data_format!r}. "
                "Call keras.config.set_image_data_format() instead."
            )
        return application_model(
            name[len(APP_PREFIX) :],
            num_classes=num_classes,
            input_shape=input_shape,
            **kwargs,
        )
    if name.startswith(HUB_PREFIX) and name[len(HUB_PREFIX) :] in KERAS_HUB_RESNETS:
        blocks, block_type = KERAS_HUB_RESNETS[name[len(HUB_PREFIX) :]]
        kwargs.setdefault("name", name)
        if kwargs.get("weights") == "imagenet":
            kwargs.setdefault("imagenet_preset", KERAS_HUB_IMAGENET.get(name[len(HUB_PREFIX) :]))
        return keras_hub_backbone_model(
            num_classes=num_classes,
            input_shape=input_shape,
            stackwise_num_blocks=blocks,
            block_type=block_type,
            data_format=data_format,
            **kwargs,
        )
    raise ValueError(f"Unknown model {name!r}. Valid names: {', '.join(list_models())}")


__all__ = [
    "application_model",
    "densenet121",
    "get_model",
    "head_variables",
    "keras_cv_backbone_model",
    "keras_hub_backbone_model",
    "list_models",
    "mobilenet_v2",
    "preact_resnet18",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "small_cnn",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "wide_resnet28_10",
]
