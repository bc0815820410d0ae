"""The run folder's files: checkpoints, logs and weights files."""

import json

import keras
import numpy as np
import pytest

from keras_crl import run_folder
from keras_crl.loss_factory import make_loss
from keras_crl.models import get_model
from keras_crl.recipes import TorchSGD
from keras_crl.reproducible import numpy_initialize
from keras_crl.run_folder import load_state
from keras_crl.run_folder import save_state


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
        run_folder.state_position(bad)
    model = get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    with pytest.raises(FileNotFoundError, match="missing.weights.h5 does not exist"):
        run_folder.load_weights(model, tmp_path / "missing.weights.h5")
    (tmp_path / "bad.weights.h5").write_bytes(b"not HDF5")
    with pytest.raises(ValueError, match="Cannot load the weights file .*bad.weights.h5"):
        run_folder.load_weights(model, tmp_path / "bad.weights.h5")


def trained_model():
    model = get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    model.compile(
        optimizer=TorchSGD(0.1, momentum=0.9),
        loss=make_loss("crl"),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    # Seeded weights and one class: whatever ran before in this process,
    # every metric total ends nonzero (eight classes could leave 0 correct).
    numpy_initialize(model, 0)
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype("float32")
    model.fit(x, np.zeros(8, "int32"), batch_size=4, epochs=1, verbose=0)
    return model


def test_keep_the_last_k_checkpoints(tmp_path):
    model = trained_model()
    path = tmp_path / "state.npz"
    for keep, expected in ((3, ["state-0000-000003.npz", "state-0001-000000.npz"]), (1, [])):
        for position in ((0, 1), (0, 2), (0, 3), (1, 0), (1, 1)):
            save_state(model, position[0], path, step=position[1], keep=keep)
        assert run_folder.state_position(path) == (1, 1)
        kept = sorted(p.name for p in tmp_path.glob("state-*.npz"))
        assert kept == expected, keep
        for name in kept:
            assert run_folder.state_position(tmp_path / name) == tuple(
                int(n) for n in name[6:-4].split("-")
            )
    assert not list(tmp_path.glob("*.tmp"))


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = trained_model()
    path = tmp_path / "state.npz"
    save_state(model, 0, path, step=3, keep=2)

    def killed(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt  # (the process dies here)

    monkeypatch.setattr(np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        save_state(model, 0, path, step=6, keep=2)
    monkeypatch.undo()
    assert run_folder.state_position(path) == (0, 3)
    assert load_state(model, path) == 0
    assert not list(tmp_path.glob("state-*.npz"))
    save_state(model, 0, path, step=6, keep=2)  # the next save goes through
    assert run_folder.state_position(path) == (0, 6)
    assert not list(tmp_path.glob("*.tmp"))


def test_mid_epoch_checkpoint_holds_the_metric_totals(tmp_path):
    model = trained_model()
    totals = [keras.ops.convert_to_numpy(v) for v in model.metrics_variables]
    assert len(totals) >= 4 and all(np.any(t != 0) for t in totals)  # loss and accuracy
    save_state(model, 2, tmp_path / "mid.npz", step=5)
    save_state(model, 3, tmp_path / "end.npz")
    model.reset_metrics()
    run_folder.load_metric_state(model, tmp_path / "end.npz")  # an epoch end: nothing
    assert all(not np.any(keras.ops.convert_to_numpy(v)) for v in model.metrics_variables)
    run_folder.load_metric_state(model, tmp_path / "mid.npz")
    for total, v in zip(totals, model.metrics_variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), total)


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
