"""ImageNet-style backbones from `keras.applications`, keras-hub (and
keras-cv) with a logits head.

These are the standard ImageNet networks (7x7/2 or 3x3/2 stems, 32x total
downsampling), not the CIFAR variants of the zoo: use them for larger images
or for fine-tuning from ImageNet weights. Inputs follow each family's own
preprocessing convention (see `keras.applications.<family>.preprocess_input`);
EfficientNet and MobileNetV3 rescale inside the model and expect [0, 255].
"""

import keras

from keras_crl.models.common import logits_head
from keras_crl.models.common import resolve_data_format

# Registry name -> `keras.applications` attribute. Every entry accepts inputs
# as small as 32x32 when `weights=None`.
APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "resnet50_v2": "ResNet50V2",
    "resnet101_v2": "ResNet101V2",
    "resnet152_v2": "ResNet152V2",
    "densenet121": "DenseNet121",
    "densenet169": "DenseNet169",
    "densenet201": "DenseNet201",
    "mobilenet_v2": "MobileNetV2",
    "mobilenet_v3_small": "MobileNetV3Small",
    "mobilenet_v3_large": "MobileNetV3Large",
    "efficientnet_b0": "EfficientNetB0",
    "efficientnet_b1": "EfficientNetB1",
    "efficientnet_b2": "EfficientNetB2",
    "efficientnet_b3": "EfficientNetB3",
    "efficientnet_v2_b0": "EfficientNetV2B0",
    "efficientnet_v2_s": "EfficientNetV2S",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
}


# Registry name -> keras-hub `ResNetBackbone` blocks per stage and block type
# (the ResNets of He et al.; the stages have 64, 128, 256 and 512 filters).
KERAS_HUB_RESNETS = {
    "resnet18": ((2, 2, 2, 2), "basic_block"),
    "resnet34": ((3, 4, 6, 3), "basic_block"),
    "resnet50": ((3, 4, 6, 3), "bottleneck_block"),
    "resnet101": ((3, 4, 23, 3), "bottleneck_block"),
    "resnet152": ((3, 8, 36, 3), "bottleneck_block"),
}
# Registry name -> keras-hub's ImageNet preset of the same network (there is
# none of ResNet-34).
KERAS_HUB_IMAGENET = {
    "resnet18": "resnet_18_imagenet",
    "resnet50": "resnet_50_imagenet",
    "resnet101": "resnet_101_imagenet",
    "resnet152": "resnet_152_imagenet",
}


def list_applications():
    """Returns the sorted names accepted by `application_model`."""
    return sorted(APPLICATIONS)


def application_model(
    name,
    num_classes,
    input_shape=(224, 224, 3),
    weights=None,
    freeze_backbone=False,
    dropout=0.0,
    **kwargs,
):
    """A `keras.applications` backbone plus global pooling and a logits layer.

    The backbone is built with `include_top=False, pooling="avg"`, so any
    `num_classes` works, followed by optional dropout and
    `Dense(num_classes)` without activation. It uses the global
    `keras.config.image_data_format()`.

    Args:
        name: one of `list_applications()`, e.g. `"resnet50"`.
        num_classes: number of output logits.
        input_shape: shape of one image (at least 32x32).
        weights: `None` (random init), `"imagenet"` (downloaded by Keras on
            first use, needs network access) or a path to a weights file.
        freeze_backbone: if True, the backbone's weights are not trained
            (and its BatchNormalization layers run in inference mode), so
            only the head learns.
        dropout: dropout rate before the logits layer (0.0: none).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Example:

    >>> model = application_model("mobilenet_v2", num_classes=10,
    ...                           input_shape=(96, 96, 3), weights=None)
    >>> model.output_shape
    (None, 10)
    """
    if name not in APPLICATIONS:
        raise ValueError(
            f"Unknown keras.applications model {name!r}. "
            f"Valid names: {', '.join(list_applications())}"
        )
    constructor = getattr(keras.applications, APPLICATIONS[name])
    try:
        backbone = constructor(
            include_top=False,
            weights=weights,
            input_shape=tuple(input_shape),
            pooling="avg",
        )
    except Exception as error:  # keras.utils.get_file raises a bare Exception offline
        if weights != "imagenet":
            raise
        raise ValueError(
            f"Could not get the ImageNet weights of {name} ({error}). Offline, put Keras' "
            "file for it in ~/.keras/models (Keras' cache, $KERAS_HOME/models), or pass a "
            ".weights.h5 file of the backbone as weights (--weights PATH)."
        ) from error
    backbone.trainable = not freeze_backbone
    kwargs.setdefault("name", f"keras_app_{name}")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    outputs = logits_head(backbone(inputs), num_classes, pool=False, dropout=dropout)
    return keras.Model(inputs, outputs, **kwargs)


def keras_cv_backbone_model(
    num_classes,
    input_shape=(224, 224, 3),
    stackwise_num_filters=(64, 128, 256, 512),
    stackwise_num_blocks=(2, 2, 2, 2),
    stackwise_num_strides=(1, 2, 2, 2),
    block_type="basic_block",
    include_rescaling=False,
    dropout=0.0,
    **kwargs,
):
    """A `keras_cv.models.ResNetBackbone` with explicit settings plus logits.

    No preset is used (presets download weights). The defaults give a
    ResNet-18 shaped backbone; `block_type="block"` with blocks
    `(3, 4, 6, 3)` gives a ResNet-50. keras-cv's ResNet keeps the ImageNet
    stem (7x7/2 conv and max-pool).

    Args:
        num_classes: number of output logits.
        input_shape: shape of one image, channels last.
        stackwise_num_filters: filters of each stack.
        stackwise_num_blocks: blocks in each stack.
        stackwise_num_strides: stride of the first block of each stack.
        block_type: `"basic_block"` (ResNet-18/34) or `"block"`
            (bottleneck, ResNet-50+).
        include_rescaling: if True the backbone rescales [0, 255] inputs.
        dropout: dropout rate before the logits layer (0.0: none).
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Raises:
        ImportError: if keras-cv is not installed.

    Example:

    >>> model = keras_cv_backbone_model(10, input_shape=(64, 64, 3))
    >>> model.output_shape
    (None, 10)
    """
    # Imported here: keras-cv is optional and importing it always pulls in
    # TensorFlow, which users of the torch or jax backends may not have.
    try:
        import keras_cv
    except ImportError as error:
        raise ImportError(
            "keras_cv_backbone_model needs keras-cv: "
            "pip install keras-crl[keras-cv]; "
            "note keras-cv always imports TensorFlow."
        ) from error
    backbone = keras_cv.models.ResNetBackbone(
        stackwise_filters=list(stackwise_num_filters),
        stackwise_blocks=list(stackwise_num_blocks),
        stackwise_strides=list(stackwise_num_strides),
        include_rescaling=include_rescaling,
        input_shape=tuple(input_shape),
        block_type=block_type,
    )
    kwargs.setdefault("name", "keras_cv_resnet")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    outputs = logits_head(backbone(inputs), num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, **kwargs)


def keras_hub_backbone_model(
    num_classes,
    input_shape=(224, 224, 3),
    stackwise_num_filters=(64, 128, 256, 512),
    stackwise_num_blocks=(2, 2, 2, 2),
    stackwise_num_strides=(1, 2, 2, 2),
    block_type="basic_block",
    use_pre_activation=False,
    data_format=None,
    dropout=0.0,
    weights=None,
    imagenet_preset=None,
    **kwargs,
):
    """A `keras_hub.models.ResNetBackbone` with explicit settings plus logits.

    keras-hub is keras-cv's maintained successor. No preset is used (presets
    download weights). The defaults give a ResNet-18; `block_type=
    "bottleneck_block"` with blocks `(3, 4, 6, 3)` gives a ResNet-50, and
    `use_pre_activation=True` the ResNetV2 form. The stem is ImageNet-style
    (7x7/2 conv and 3x3/2 max-pool) and the first stack must have 64 filters.

    Args:
        num_classes: number of output logits.
        input_shape: shape of one image, `(H, W, C)` or, with
            channels_first, `(C, H, W)`.
        stackwise_num_filters: filters of each stack (the first is 64).
        stackwise_num_blocks: blocks in each stack.
        stackwise_num_strides: stride of the first block of each stack.
        block_type: `"basic_block"` (ResNet-18/34) or `"bottleneck_block"`
            (ResNet-50+).
        use_pre_activation: if True, ResNetV2's pre-activation blocks.
        data_format: `"channels_last"`, `"channels_first"` or `None` for
            `keras.config.image_data_format()`.
        dropout: dropout rate before the logits layer (0.0: none).
        weights: `None` (random init), a `.weights.h5` file of the backbone,
            or `"imagenet"`: the backbone of keras-hub's preset
            `imagenet_preset` (downloaded by keras-hub on first use), whose
            settings replace the ones above.
        imagenet_preset: the keras-hub preset `"imagenet"` loads, e.g.
            `"resnet_50_imagenet"`.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Returns:
        A functional `keras.Model` mapping images to logits (no softmax).

    Raises:
        ImportError: if keras-hub is not installed.
        ValueError: `"imagenet"` without a preset, or a preset keras-hub
            cannot get (offline: the message says where it looks).

    Example:

    >>> model = keras_hub_backbone_model(10, input_shape=(32, 32, 3),
    ...                                  stackwise_num_filters=(64,),
    ...                                  stackwise_num_blocks=(1,),
    ...                                  stackwise_num_strides=(1,))
    >>> model.output_shape
    (None, 10)
    """
    # Imported here: keras-hub is optional, and on Linux it installs and
    # imports TensorFlow (for tensorflow-text) whatever the Keras backend.
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            "keras_hub_backbone_model needs keras-hub: "
            "pip install keras-crl[keras-hub]; "
            "note keras-hub installs and imports TensorFlow."
        ) from error
    data_format, _ = resolve_data_format(data_format)
    if weights == "imagenet":
        backbone = _keras_hub_preset(keras_hub, imagenet_preset, input_shape, data_format)
    else:
        backbone = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[7],
            stackwise_num_filters=list(stackwise_num_filters),
            stackwise_num_blocks=list(stackwise_num_blocks),
            stackwise_num_strides=list(stackwise_num_strides),
            block_type=block_type,
            use_pre_activation=use_pre_activation,
            image_shape=tuple(input_shape),
            data_format=data_format,
        )
        if weights is not None:
            backbone.load_weights(weights)
    kwargs.setdefault("name", "keras_hub_resnet")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    outputs = logits_head(backbone(inputs), num_classes, data_format=data_format, dropout=dropout)
    return keras.Model(inputs, outputs, **kwargs)


def _keras_hub_preset(keras_hub, preset, input_shape, data_format):
    """The backbone of keras-hub's ImageNet `preset`, for images of `input_shape`."""
    if preset is None:
        raise ValueError(
            "keras-hub has no ImageNet preset of this ResNet (it has ResNet-18, 50, 101 and "
            "152); give a .weights.h5 file of the backbone (--weights PATH)."
        )
    try:
        return keras_hub.models.ResNetBackbone.from_preset(
            preset, image_shape=tuple(input_shape), data_format=data_format
        )
    except Exception as error:  # kagglehub raises its own errors offline
        raise ValueError(
            f"Could not get keras-hub's preset {preset} ({type(error).__name__}). Offline, "
            "download it once where keras-hub looks (kagglehub's cache, $KAGGLEHUB_CACHE, "
            "default ~/.cache/kagglehub), or pass a .weights.h5 file of the backbone "
            "(--weights PATH)."
        ) from error
