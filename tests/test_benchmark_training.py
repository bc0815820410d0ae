"""The paper's benchmarks through `keras-crl train`: their folds, metrics and weights.

The loaders' own tests (layouts, splits, bad input) are in
tests/test_benchmark_loaders.py; here a miniature Adience tree trains for one
epoch on each backend, and a saved backbone starts a fine-tuning run.
"""

import csv
import json

import keras
import numpy as np
import pytest

from keras_crl import cli
from keras_crl.metrics import benchmark_metrics
from tests.test_benchmark_loaders import adience  # noqa: F401 (a fixture)


def test_adience_fold_trains_and_reports_one_off_accuracy(adience, tmp_path, capsys):  # noqa: F811
    run_dir = tmp_path / "run"
    args = ["train", "--dataset", "adience", "--data-dir", str(adience), "--image-size", "16"]
    args += ["--fold", "3", "--epochs", "1", "--batch-size", "8", "--verbose", "0"]
    assert cli.main([*args, "--run-dir", str(run_dir)]) == 0, capsys.readouterr().err
    with open(run_dir / "log.csv") as f:
        header = next(csv.reader(f))
    assert {"one_off_accuracy", "val_one_off_accuracy"} <= set(header), header
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # One-off counts every exact hit and more.
    assert metrics["test_accuracy"] <= metrics["test_one_off_accuracy"] <= 1.0
    # Fold 3 is the test split: its two users' 16 usable faces.
    assert metrics["test_images"] == 16
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["dataset_options"]["fold"] == 3


@pytest.mark.once_per_suite
def test_the_benchmarks_metrics():
    assert [m.name for m in benchmark_metrics("imagenet")] == ["top5_accuracy"]
    assert [m.name for m in benchmark_metrics("adience")] == ["one_off_accuracy"]
    assert benchmark_metrics("cub200_stream") == [] and benchmark_metrics("digits") == []
    top5 = benchmark_metrics("imagenet")[0]
    scores = np.eye(8)[[1, 2, 3]] + np.arange(8) / 100  # 7, 6, 5, 4 next best
    top5.update_state(np.array([1, 0, 6]), scores)
    assert float(top5.result()) == pytest.approx(2 / 3)


@pytest.mark.once_per_suite
@pytest.mark.parametrize(
    "flags, pattern",
    [
        (["--fold", "1"], r"--fold 1: does not apply to dataset digits"),
        (
            ["--weights", "imagenet"],
            r"--weights imagenet: applies to the keras_app_\* models .* keras_hub_\*",
        ),
        (["--model", "keras_app_mobilenet_v2", "--weights", "nofile.h5"], r"no such file"),
    ],
)
def test_benchmark_flags_refuse_what_does_not_apply(tmp_path, capsys, flags, pattern):
    import re

    assert cli.main(["train", *flags, "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(pattern, err), err
    assert not (tmp_path / "r").exists()


@pytest.mark.once_per_suite
def test_fine_tuning_starts_from_a_saved_backbone(tmp_path, capsys):
    backbone = keras.applications.MobileNetV2(
        include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg"
    )
    saved = tmp_path / "backbone.weights.h5"
    backbone.save_weights(saved)
    kernels = {
        w.path: keras.ops.convert_to_numpy(w) for w in backbone.weights if "kernel" in w.path
    }
    run_dir = tmp_path / "run"
    args = ["train", "--model", "keras_app_mobilenet_v2", "--weights", str(saved)]
    args += ["--dataset", "synthetic", "--epochs", "1", "--limit", "32", "--batch-size", "16"]
    # lr 0: the weights the run ends with are the ones it started from.
    args += ["--lr", "0", "--verbose", "0", "--run-dir", str(run_dir)]
    assert cli.main(args) == 0, capsys.readouterr().err
    from keras_crl.models import get_model

    model = get_model("keras_app_mobilenet_v2", num_classes=10, input_shape=(32, 32, 3))
    model.load_weights(run_dir / "last.weights.h5")
    trained = model.get_layer("mobilenetv2_1.00_32")
    loaded = {w.path: keras.ops.convert_to_numpy(w) for w in trained.weights if "kernel" in w.path}
    assert loaded.keys() == kernels.keys()
    for path, kernel in kernels.items():
        np.testing.assert_array_equal(loaded[path], kernel, err_msg=path)


@pytest.mark.once_per_suite
def test_a_keras_hub_backbone_starts_from_a_saved_file(tmp_path):
    pytest.importorskip("keras_hub")
    from keras_crl.models import get_model

    shape = (32, 32, 3)
    source = get_model("keras_hub_resnet18", num_classes=4, input_shape=shape)
    backbone = source.layers[1]
    saved = tmp_path / "backbone.weights.h5"
    backbone.save_weights(saved)
    model = get_model("keras_hub_resnet18", num_classes=4, input_shape=shape, weights=str(saved))
    # Keras' random initialization would differ from the file.
    for mine, theirs in zip(model.layers[1].weights, backbone.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(mine), keras.ops.convert_to_numpy(theirs), err_msg=mine.path
        )


@pytest.mark.once_per_suite
def test_keras_hub_imagenet_offline_says_where_to_put_it(monkeypatch):
    keras_hub = pytest.importorskip("keras_hub")
    from keras_crl.models import get_model

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(keras_hub.models.ResNetBackbone, "from_preset", offline)
    with pytest.raises(ValueError) as error:
        get_model("keras_hub_resnet50", num_classes=4, input_shape=(32, 32, 3), weights="imagenet")
    message = str(error.value)
    assert "\n" not in message and "resnet_50_imagenet" in message, message
    assert "$KAGGLEHUB_CACHE" in message and "--weights PATH" in message, message
    with pytest.raises(ValueError, match="no ImageNet preset of this ResNet"):
        get_model("keras_hub_resnet34", num_classes=4, input_shape=(32, 32, 3), weights="imagenet")
