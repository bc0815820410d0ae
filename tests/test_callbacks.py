"""The callbacks `train()` adds: NaN stop, best weights, checkpoint, timer."""

import json

import keras
import numpy as np
import pytest

from keras_crl.callbacks import BestWeights
from keras_crl.callbacks import EpochTimer
from keras_crl.callbacks import StopOnNaN
from keras_crl.train import make_loss


def test_stop_on_nan_names_the_step():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=make_loss("crl"))
    x = np.array([[1.0, 2.0]] * 4 + [[np.nan, 1.0]] * 4, "float32")
    with pytest.raises(FloatingPointError, match="epoch 1, step 2"):
        model.fit(
            x,
            np.zeros(8, "int32"),
            batch_size=4,
            epochs=1,
            shuffle=False,
            callbacks=[StopOnNaN()],
            verbose=0,
        )


def test_best_weights_keeps_the_earliest_best_and_resumes_its_threshold(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    path = tmp_path / "best.weights.h5"
    best = BestWeights(path)
    best.set_model(model)
    for epoch, accuracy in enumerate([0.5, 0.7, 0.7, 0.6]):
        model.layers[0].bias.assign(np.full(3, epoch, "float32"))
        best.on_epoch_end(epoch, {"val_accuracy": accuracy})
    assert json.loads(path.with_suffix(".json").read_text()) == {"epoch": 1, "val_accuracy": 0.7}
    model.load_weights(path)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.layers[0].bias), [1, 1, 1])
    resumed = BestWeights(path, resume=True)
    resumed.set_model(model)
    resumed.on_epoch_end(4, {"val_accuracy": 0.65})  # below the best before the resume
    assert json.loads(path.with_suffix(".json").read_text())["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp*"))


def test_epoch_timer_leaves_out_the_compiling_first_epoch():
    timer = EpochTimer(num_images=100)
    timer.seconds = [5.0, 1.0, 3.0]
    assert timer.median_seconds() == 2.0 and timer.images_per_second() == 50.0
    timer.seconds = [4.0]
    assert timer.median_seconds() == 4.0
