"""The run folder's files: checkpoints, logs and weights files."""

import json

import keras
import numpy as np
import pytest

from keras_crl import run_folder
from keras_crl.models import get_model
from keras_crl.recipes import TorchSGD
from keras_crl.run_folder import load_state
from keras_crl.run_folder import save_state
from keras_crl.train import make_loss


def test_state_round_trip_and_mismatch(tmp_path):
    model = get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9), loss=make_loss("crl"))
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype("float32")
    model.train_on_batch(x, np.arange(8) % 10)
    save_state(model, 5, tmp_path / "s.npz")
    assert not (tmp_path / "s.npz.tmp").exists()
    other = get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    other.compile(optimizer=TorchSGD(0.1, momentum=0.9), loss=make_loss("crl"))
    assert load_state(other, tmp_path / "s.npz") == 5
    for a, b in zip(
        model.weights + model.optimizer.variables, other.weights + other.optimizer.variables
    ):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    bigger = get_model("small_cnn", num_classes=7, input_shape=(8, 8, 1))
    bigger.compile(optimizer="adam", loss=make_loss("crl"))
    with pytest.raises(ValueError, match="another model or optimizer"):
        load_state(bigger, tmp_path / "s.npz")


def test_a_corrupt_checkpoint_or_weights_file_is_named(tmp_path):
    bad = tmp_path / "state.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="Cannot read the checkpoint .*state.npz"):
        run_folder.state_epoch(bad)
    model = get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    with pytest.raises(FileNotFoundError, match="missing.weights.h5 does not exist"):
        run_folder.load_weights(model, tmp_path / "missing.weights.h5")
    (tmp_path / "bad.weights.h5").write_bytes(b"not HDF5")
    with pytest.raises(ValueError, match="Cannot load the weights file .*bad.weights.h5"):
        run_folder.load_weights(model, tmp_path / "bad.weights.h5")


def test_truncate_log_keeps_the_checkpointed_epochs(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n0,2.0\n1,1.5\n2,1.2\n")
    run_folder.truncate_log(log, 2)
    assert log.read_text() == "epoch,loss\n0,2.0\n1,1.5\n"
    np.testing.assert_array_equal(run_folder.read_log(log)["loss"], [2.0, 1.5])
    assert not list(tmp_path.glob("*.tmp"))


def test_write_json_replaces_the_file_whole(tmp_path):
    path = tmp_path / "metrics.json"
    run_folder.write_json(path, {"a": 1})
    run_folder.write_json(path, {"b": [1, 2]})
    assert json.loads(path.read_text()) == {"b": [1, 2]}
    assert not list(tmp_path.glob("*.tmp"))
