"""The callbacks `train()` adds: NaN stop, best weights, checkpoint, timer."""

import json

import keras
import numpy as np
import pytest

from keras_crl import parallel
from keras_crl.callbacks import BestWeights
from keras_crl.callbacks import EpochTimer
from keras_crl.callbacks import StateCheckpoint
from keras_crl.callbacks import StopOnNaN
from keras_crl.loss_factory import make_loss
from keras_crl.run_folder import state_position


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


@pytest.mark.parametrize(
    "every, start, saved",
    [
        # Every 2 steps: inside the epoch, never at its last step (the end
        # of the epoch saves then), counted again from each save.
        ({"every_steps": 2}, (0, 0), [(0, 2), (1, 0), (1, 2), (2, 0)]),
        # Every moment: after every step but the last.
        (
            {"every_seconds": 1e-9},
            (0, 0),
            [(0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3), (2, 0)],
        ),
        # A fit that starts at step 1 of epoch 1 numbers that epoch's steps from there.
        ({"every_steps": 2}, (1, 1), [(1, 3), (2, 0)]),
    ],
)
def test_state_checkpoint_saves_inside_epochs(tmp_path, every, start, saved):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=make_loss("crl"))
    positions = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self._record()

        def on_epoch_end(self, epoch, logs=None):
            self._record()

        def _record(self):
            if (tmp_path / "state.npz").exists():
                position = state_position(tmp_path / "state.npz")
                if position not in positions:
                    positions.append(position)

    checkpoint = StateCheckpoint(tmp_path / "state.npz", 4, start=start, **every)
    steps = 4 - start[1]
    model.fit(
        np.ones((4 * steps, 2), "float32"),
        np.zeros(4 * steps, "int32"),
        batch_size=4,
        epochs=start[0] + 1,
        initial_epoch=start[0],
        callbacks=[checkpoint, Record()],
        verbose=0,
    )
    if start == (0, 0):
        model.fit(
            np.ones((16, 2), "float32"),
            np.zeros(16, "int32"),
            batch_size=4,
            epochs=2,
            initial_epoch=1,
            callbacks=[checkpoint, Record()],
            verbose=0,
        )
    assert positions == saved


def test_a_time_based_checkpoint_is_the_chiefs_decision(tmp_path, monkeypatch):
    # Each process's clock differs: a save due by time must be the chief's
    # decision, taken by every process at the same step (parallel.chief_decides).
    asked = []

    def chief_says_no(flag):
        asked.append(flag)
        return False

    monkeypatch.setattr(parallel, "chief_decides", chief_says_no)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(optimizer="sgd", loss=make_loss("crl"))
    checkpoint = StateCheckpoint(tmp_path / "state.npz", 4, every_seconds=1e-9)
    x, y = np.ones((16, 2), "float32"), np.zeros(16, "int32")
    model.fit(x, y, batch_size=4, epochs=1, callbacks=[checkpoint], verbose=0)
    assert asked == [True, True, True]  # this process's clock said yes three times
    assert state_position(tmp_path / "state.npz") == (1, 0)  # only the epoch's end saved
    assert not list(tmp_path.glob("state-*"))


CHIEF_DECIDES = """
import os, sys
import torch.distributed as dist
from keras_crl import parallel
rank = int(sys.argv[1])
dist.init_process_group("gloo", init_method=sys.argv[2], rank=rank, world_size=2)
print([parallel.chief_decides(rank == chief) for chief in (0, 1)])
dist.destroy_process_group()
"""


@pytest.mark.once_per_suite
def test_chief_decides_gives_every_torch_process_the_chiefs_flag(tmp_path):
    import os
    import subprocess
    import sys

    address = f"file://{tmp_path / 'rendezvous'}"
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CHIEF_DECIDES, str(rank), address],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            outputs.append(out.strip().splitlines()[-1])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    # The chief (rank 0) is due in the first question, not in the second.
    assert outputs == ["[True, False]", "[True, False]"]
