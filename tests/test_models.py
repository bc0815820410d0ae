"""Tests of the model zoo: registry, parameter counts, one step per model.

Trainable parameter counts are pinned to PyTorch references of the same
architectures (kuangliu/pytorch-cifar layout; WRN-28-10 from the paper), so
a silent change of the architecture fails here. Only the small networks
take a real train step; the others run forward on one image, because on 2
CPU cores compiling a train step per model would dominate the whole suite.
"""

import sys

import keras
import numpy as np
import pytest

from keras_crl.backends import takes_channels_first
from keras_crl.models import application_model
from keras_crl.models import get_model
from keras_crl.models import keras_cv_backbone_model
from keras_crl.models import keras_hub_backbone_model
from keras_crl.models import list_models
from keras_crl.models.wide_resnet import build_wide_resnet
from keras_crl.reproducible import numpy_initialize

# Trainable parameters for 10 classes and 3 input channels.
PARAM_COUNTS = {
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "resnet50": 23_520_842,
    "resnet101": 42_512_970,
    "resnet152": 58_156_618,
    "preact_resnet18": 11_171_146,
    "vgg11": 9_231_114,
    "vgg13": 9_416_010,
    "vgg16": 14_728_266,
    "vgg19": 20_040_522,
    "densenet121": 6_956_298,
    "mobilenet_v2": 2_296_922,
    "wide_resnet28_10": 36_479_194,
    "small_cnn": 20_138,
}


def count_trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def images(n, shape, seed=0):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def train_one_step(model, x, y):
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    loss = float(np.asarray(model.train_on_batch(x, y)))
    assert np.isfinite(loss)
    return loss


def test_list_models_is_sorted_and_complete():
    names = list_models()
    assert names == sorted(names)
    assert set(PARAM_COUNTS) <= set(names)
    for app in (
        "keras_app_resnet50",
        "keras_app_mobilenet_v2",
        "keras_app_densenet121",
        "keras_app_efficientnet_b0",
    ):
        assert app in names


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        get_model("resnet9000")
    message = str(info.value)
    assert "resnet9000" in message
    for name in ("resnet18", "small_cnn", "keras_app_resnet50"):
        assert name in message


def test_invalid_data_format_raises():
    with pytest.raises(ValueError, match="data_format"):
        get_model("small_cnn", data_format="channels_middle")


# Deeper models of a family whose shallowest member takes the SGD step:
# the same blocks, more of them (their counts are still checked).
SAME_BLOCKS_AS = {
    "resnet101": "resnet50",
    "resnet152": "resnet50",
    "vgg13": "vgg11",
    "vgg16": "vgg11",
    "vgg19": "vgg11",
}


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_zoo_param_count_and_train_step(name):
    # Every model, every backend: the count, then one real SGD step on two
    # images, which must change the weights. (The cross-backend suite also
    # compares every model's logits across the backends.)
    model = get_model(name, num_classes=10, input_shape=(32, 32, 3), data_format="channels_last")
    assert model.name == name
    assert count_trainable(model) == PARAM_COUNTS[name]
    if name in SAME_BLOCKS_AS:
        return
    before = keras.ops.convert_to_numpy(model.trainable_weights[0]).copy()
    train_one_step(model, images(2, (32, 32, 3)), np.array([0, 1]))
    after = keras.ops.convert_to_numpy(model.trainable_weights[0])
    assert not np.array_equal(before, after)


def test_num_classes_is_honoured():
    model = get_model("small_cnn", num_classes=7, input_shape=(16, 16, 3))
    assert model.output_shape == (None, 7)
    assert tuple(model(images(2, (16, 16, 3))).shape) == (2, 7)
    # Only the last layer depends on the number of classes: 512 * 90 + 90.
    model = get_model("resnet18", num_classes=100)
    assert count_trainable(model) == PARAM_COUNTS["resnet18"] + 512 * 90 + 90


def test_small_cnn_on_digits_sized_images():
    model = get_model(
        "small_cnn", num_classes=10, input_shape=(8, 8, 1), data_format="channels_last"
    )
    assert count_trainable(model) < 100_000
    x = images(2, (8, 8, 1))
    first = train_one_step(model, x, np.array([3, 7]))
    # A few more steps on the same batch must lower the loss: gradients
    # reach the weights.
    for _ in range(5):
        last = float(np.asarray(model.train_on_batch(x, np.array([3, 7]))))
    assert last < first


def test_small_cnn_without_batch_norm():
    from keras_crl.cli.flags import build_parser
    from keras_crl.cli.to_config import config_from_args

    model = get_model("small_cnn", input_shape=(8, 8, 1), batch_norm=False)
    assert not [layer for layer in model.layers if "normalization" in type(layer).__name__.lower()]
    # Conv biases instead: 9*32 + 32, 9*32*64 + 64, then 64*10 + 10.
    assert count_trainable(model) == 19_466
    # Each example's logits depend on that example alone (no batch statistics
    # in training): a batch's outputs are its halves' outputs.
    x = images(4, (8, 8, 1))
    whole = keras.ops.convert_to_numpy(model(x, training=True))
    halves = [keras.ops.convert_to_numpy(model(x[i : i + 2], training=True)) for i in (0, 2)]
    np.testing.assert_allclose(whole, np.concatenate(halves), rtol=1e-6, atol=1e-6)
    args = build_parser().parse_args(["train", "--no-batch-norm"])
    assert config_from_args(args, "run").model_options == {"batch_norm": False}
    assert config_from_args(build_parser().parse_args(["train"]), "run").model_options == {}


# TensorFlow's own CPU kernels take channels-last only: channels-first runs
# where a GPU or oneDNN is (backends.takes_channels_first), else is refused.
channels_first_runs = pytest.mark.skipif(
    not takes_channels_first(), reason="this TensorFlow's CPU kernels take channels-last only"
)


@channels_first_runs
@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_channels_first(name):
    model = get_model(name, num_classes=10, input_shape=(3, 16, 16), data_format="channels_first")
    bn_axes = {
        tuple(np.atleast_1d(layer.axis))
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert bn_axes == {(1,)}
    logits = model(images(2, (3, 16, 16)), training=False)
    assert tuple(logits.shape) == (2, 10)
    assert count_trainable(model) == PARAM_COUNTS[name]


@pytest.mark.skipif(takes_channels_first(), reason="this backend runs channels-first")
def test_channels_first_is_refused_where_it_cannot_run(tmp_path, capsys):
    from keras_crl import cli

    assert cli.main(["train", "--channels-first", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--channels-first: TensorFlow's CPU kernels here take channels-last" in err, err
    assert not (tmp_path / "r").exists()


@channels_first_runs
def test_small_cnn_channels_first_trains():
    model = get_model(
        "small_cnn", num_classes=10, input_shape=(1, 8, 8), data_format="channels_first"
    )
    train_one_step(model, images(2, (1, 8, 8)), np.array([0, 1]))


def test_wide_resnet_dropout_and_depth_check():
    # A tiny WRN-10-1 exercises the same block code as WRN-28-10.
    model = build_wide_resnet(depth=10, width=1, num_classes=3, input_shape=(8, 8, 3), dropout=0.3)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == 3 and dropouts[0].rate == 0.3
    assert model.output_shape == (None, 3)
    # Dropout is off by default.
    default = build_wide_resnet(depth=10, width=1, input_shape=(8, 8, 3))
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in default.layers)
    with pytest.raises(ValueError, match="6n"):
        build_wide_resnet(depth=27)


def test_application_model_builds_without_weights():
    model = application_model(
        "mobilenet_v2",
        num_classes=5,
        input_shape=(32, 32, 3),
        weights=None,
        freeze_backbone=True,
        dropout=0.2,
    )
    assert model.output_shape == (None, 5)
    # Frozen backbone: only the head's kernel and bias are trainable.
    assert count_trainable(model) == 1280 * 5 + 5
    logits = np.asarray(model.predict_on_batch(images(1, (32, 32, 3))))
    assert logits.shape == (1, 5)


def test_application_registry_errors():
    with pytest.raises(ValueError, match="Valid names"):
        application_model("alexnet", num_classes=10)
    other = (
        "channels_first" if keras.config.image_data_format() == "channels_last" else "channels_last"
    )
    with pytest.raises(ValueError, match="set_image_data_format"):
        get_model("keras_app_resnet50", data_format=other)


def test_keras_cv_backbone_model_needs_keras_cv(monkeypatch):
    # keras-cv is installed for the test suite; hide it to see the error.
    monkeypatch.setitem(sys.modules, "keras_cv", None)
    with pytest.raises(ImportError) as info:
        keras_cv_backbone_model(10, input_shape=(32, 32, 3))
    message = str(info.value)
    assert "pip install keras-crl[keras-cv]" in message
    assert "TensorFlow" in message


@pytest.mark.parametrize(
    "name, count",
    # torchvision's resnet18 and resnet50 with a 10-class head.
    [("keras_hub_resnet18", 11_181_642), ("keras_hub_resnet50", 23_528_522)],
)
def test_keras_hub_zoo_names_resnets_with_a_logits_head(name, count):
    assert name in list_models()
    model = get_model(name, num_classes=10, input_shape=(32, 32, 3), data_format="channels_last")
    assert model.name == name
    assert count_trainable(model) == count
    # Logits: the zoo's head, no softmax after it. (Built only: a forward
    # pass of a ResNet-50 costs seconds; the tiny backbone below trains.)
    head = model.layers[-1]
    assert head.name == "logits" and head.activation is keras.activations.linear
    assert model.output_shape == (None, 10)
    # What `keras-crl train --model keras_hub_...` does first: every weight's
    # initializer is one that NumPy can reproduce on any backend.
    numpy_initialize(model, seed=0)


@pytest.mark.parametrize(
    "data_format", ["channels_last", pytest.param("channels_first", marks=channels_first_runs)]
)
def test_keras_hub_backbone_trains_with_crl(data_format):
    from keras_crl import CompetingRatioLoss

    shape = (8, 8, 1) if data_format == "channels_last" else (1, 8, 8)
    model = keras_hub_backbone_model(
        3,
        input_shape=shape,
        stackwise_num_filters=(64,),
        stackwise_num_blocks=(1,),
        stackwise_num_strides=(1,),
        data_format=data_format,
    )
    bn_axes = {
        tuple(np.atleast_1d(layer.axis))
        for layer in model.layers[1].layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert bn_axes == {(-1,) if data_format == "channels_last" else (1,)}
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=CompetingRatioLoss(from_logits=True))
    x, y = images(4, shape), np.array([0, 1, 2, 0])
    first = float(np.asarray(model.train_on_batch(x, y)))
    for _ in range(3):
        last = float(np.asarray(model.train_on_batch(x, y)))
    assert np.isfinite(first) and last < first


def test_keras_hub_backbone_model_needs_keras_hub(monkeypatch):
    # keras-hub is installed for the test suite; hide it to see the error.
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    with pytest.raises(ImportError) as info:
        get_model("keras_hub_resnet18")
    assert "pip install keras-crl[keras-hub]" in str(info.value)
