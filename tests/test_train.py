"""The training loop, run folder, checkpoints and seeded initialisation."""

import json
import math

import keras
import numpy as np
import pytest

from keras_crl.calibration import expected_calibration_error
from keras_crl.reproducible import numpy_initialize
from keras_crl.run_folder import read_log
from keras_crl.train import TrainConfig
from keras_crl.train import check_config
from keras_crl.train import train


def quick_config(tmp_path, **overrides):
    settings = dict(
        model="small_cnn",
        dataset="digits",
        epochs=2,
        batch_size=64,
        limit=256,
        learning_rate=0.05,
        run_dir=str(tmp_path / "run"),
        verbose=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def weights_of(path, model_name="small_cnn"):
    from keras_crl.models import get_model

    model = get_model(model_name, num_classes=10, input_shape=(8, 8, 1))
    model.load_weights(path)
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_run_folder(tmp_path):
    metrics = train(quick_config(tmp_path))
    run = tmp_path / "run"
    for name in (
        "config.json",
        "log.csv",
        "best.weights.h5",
        "last.weights.h5",
        "metrics.json",
        "state.npz",
        "loss.png",
        "accuracy.png",
    ):
        assert (run / name).exists(), name
    assert json.loads((run / "metrics.json").read_text()) == metrics
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"]["momentum"] == 0.9 and config["recipe"]["weight_decay"] == 5e-4
    assert config["recipe"]["epochs"] == 2 and config["milestones_used"] == [1, 2]
    assert config["backend"] == keras.backend.backend()
    log = read_log(run / "log.csv")
    assert list(log["epoch"]) == [0, 1] and np.isfinite(log["loss"]).all()
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["best_epoch"] in (0, 1)
    # Calibration beside accuracy (keras_crl.calibration): logged per epoch,
    # and the test figures with the ECE's bins, which hold every test image.
    for column in ("ece", "nll", "brier", "confidence"):
        assert np.isfinite(log[f"val_{column}"]).all(), column
        assert np.isfinite(metrics[f"test_{column}"]), column
    bins = metrics["test_calibration_bins"]
    assert sum(bins["counts"]) == metrics["test_images"]
    assert sum(bins["correct"]) == round(metrics["test_accuracy"] * metrics["test_images"])
    assert sum(bins["confidences"]) == pytest.approx(
        metrics["test_confidence"] * metrics["test_images"], rel=1e-5
    )
    assert metrics["test_ece"] == pytest.approx(
        expected_calibration_error(bins["counts"], bins["confidences"], bins["correct"]),
        rel=1e-5,
    )


class EpochsRun(keras.callbacks.Callback):
    """The epochs this process trained (training is deterministic, so equal
    end weights alone cannot tell a resumed run from a rerun)."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def test_resume_continues_exactly(tmp_path):
    # A constant rate: a longer step schedule keeps the milestones it started
    # with (resumed_config), so only then do 1 + 2 epochs equal 3.
    constant = dict(schedule="constant")
    full = quick_config(tmp_path, epochs=3, run_dir=str(tmp_path / "full"), **constant)
    train(full)
    part = quick_config(tmp_path, epochs=1, run_dir=str(tmp_path / "part"), **constant)
    train(part)
    resumed = quick_config(
        tmp_path, epochs=3, run_dir=str(tmp_path / "part"), resume=True, **constant
    )
    ran = EpochsRun()
    train(resumed, callbacks=[ran])
    assert ran.epochs == [1, 2]
    for a, b in zip(
        weights_of(tmp_path / "full/last.weights.h5"), weights_of(tmp_path / "part/last.weights.h5")
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        read_log(tmp_path / "part/log.csv")["loss"], read_log(tmp_path / "full/log.csv")["loss"]
    )


def test_numpy_initialize_is_seeded_and_keeps_scale():
    from keras_crl.models import get_model

    def initial(seed):
        model = get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
        numpy_initialize(model, seed)
        return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}

    a, b, c = initial(0), initial(0), initial(1)
    for path in a:
        np.testing.assert_array_equal(a[path], b[path])
    kernels = [p for p in a if p.endswith("kernel")]
    assert kernels and all(not np.array_equal(a[p], c[p]) for p in kernels)
    for path in a:
        if "gamma" in path or "moving_variance" in path:
            assert np.all(a[path] == 1)
        if "beta" in path or "bias" in path or "moving_mean" in path:
            assert np.all(a[path] == 0)


def test_numpy_initialize_matches_keras_distribution():
    layer = keras.layers.Dense(400, kernel_initializer="he_normal")
    model = keras.Sequential([keras.Input((300,)), layer])
    numpy_initialize(model, 0)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(kernel.std(), math.sqrt(2 / 300), rtol=0.02)
    assert np.abs(kernel).max() <= 2 * math.sqrt(2 / 300) / 0.8796256610342398 + 1e-6
    glorot = keras.layers.Dense(200)
    model = keras.Sequential([keras.Input((100,)), glorot])
    numpy_initialize(model, 0)
    limit = math.sqrt(6 / 300)
    kernel = keras.ops.convert_to_numpy(glorot.kernel)
    assert kernel.max() <= limit and kernel.min() >= -limit and kernel.max() > 0.95 * limit


def test_numpy_initialize_refuses_what_it_cannot_reproduce():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="orthogonal")]
    )
    with pytest.raises(ValueError, match="Orthogonal.*weights.h5"):
        numpy_initialize(model, 0)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("model", "resnet9000", "Valid models:.*resnet18"),
        ("dataset", "mnist", "Valid datasets:.*digits"),
        ("loss", "hinge", "Valid losses: crl, nllr, ce, focal, or a user loss"),
        ("loss", "nowhere:Loss", "Cannot import the loss .nowhere:Loss."),
        ("precision", "float8", "Valid precisions: float32"),
        ("recipe", "adam", "Valid recipes"),
        ("beta", -1.0, "beta=-1"),
    ],
)
def test_bad_config_fails_before_training(tmp_path, field, value, match):
    with pytest.raises(ValueError, match=match):
        check_config(quick_config(tmp_path, **{field: value}))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_in_16_bits_with_a_float32_loss(tmp_path, policy):
    half = policy.removeprefix("mixed_")
    seen = {}

    class Inspect(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            layers = [layer for layer in self.model.layers if layer.weights]
            seen["compute"] = {layer.compute_dtype for layer in layers}
            seen["variables"] = {w.dtype for w in self.model.trainable_weights}
            seen["optimizer"] = self.model.optimizer
            logits = self.model(np.zeros((2, 8, 8, 1), "float32"))
            seen["logits"] = keras.backend.standardize_dtype(logits.dtype)
            loss = self.model.loss(np.array([0, 1]), logits)
            seen["loss"] = keras.backend.standardize_dtype(loss.dtype)

    train(quick_config(tmp_path, precision=policy, epochs=3), callbacks=[Inspect()])
    assert seen["compute"] == {half} and seen["logits"] == half
    assert {keras.backend.standardize_dtype(d) for d in seen["variables"]} == {"float32"}
    assert seen["loss"] == "float32"
    # Keras scales a float16 loss so small gradients survive; bfloat16 has
    # float32's exponent range and needs no scaling.
    scaled = isinstance(seen["optimizer"], keras.optimizers.LossScaleOptimizer)
    assert scaled == (half == "float16")
    log = read_log(tmp_path / "run" / "log.csv")
    assert np.isfinite(log["loss"]).all() and log["loss"][-1] < log["loss"][0] - 0.1
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["precision"] == policy
    assert keras.config.dtype_policy().name == "float32"  # restored after the run


def test_train_leaves_the_dtype_policy_as_it_found_it(tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        train(quick_config(tmp_path, epochs=1, precision="float32"))
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    finally:
        keras.config.set_dtype_policy("float32")


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    class PoisonAfterFirstEpoch(keras.callbacks.Callback):
        # Runs after the state checkpoint of epoch 1 has been written.
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                w = self.model.trainable_weights[0]
                w.assign(np.full(w.shape, np.nan, "float32"))

    config = quick_config(tmp_path, epochs=3)
    with pytest.raises(FloatingPointError, match="epoch 2, step 1"):
        train(config, callbacks=[PoisonAfterFirstEpoch()])
    state = np.load(tmp_path / "run" / "state.npz")
    assert int(state["epoch"]) == 1
    assert all(np.isfinite(state[k]).all() for k in state.files)
    # The run resumes from there.
    metrics = train(quick_config(tmp_path, epochs=3, resume=True))
    assert np.isfinite(metrics["test_loss"])


def test_multi_device_needs_a_launcher_or_enough_devices(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    if keras.backend.backend() == "torch":
        match = "torchrun"  # one process per device, never in-process
    else:
        match = "this process sees"  # the tests run with a single CPU device
    with pytest.raises(ValueError, match=match):
        train(quick_config(tmp_path, devices=64))
