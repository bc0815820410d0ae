"""One process (JAX or TensorFlow) on two CPU devices; writes OUT.npz.

    KERAS_BACKEND=jax|tensorflow python -m tests.cross_backend.multi_device_worker \
        OUT.npz RUN_DIR TRAIN_ARGS...

JAX gets two host devices from XLA_FLAGS, set here before it starts;
TensorFlow's single CPU is split by `keras_crl.parallel.data_parallel` itself,
so the two-device step runs first, before anything initialises TensorFlow.

What it records, for `test_multi_device.py` to judge:

- `step`: a batch-norm CNN's training loss and every weight (batch-norm
  moving statistics included) after one SGD step on a global batch of 32, on
  two devices and on one, built and compiled as `keras_crl.train` does
  (inside `data_parallel`, through `for_training`).
- How the model saw its input while tracing the train step: JAX, the shard
  shape and device count of the input's sharding (`jax.debug.
  inspect_array_sharding`); TensorFlow, the batch size inside each replica
  function and the number of replicas.
- TensorFlow: the largest difference between the replicas' copies of every
  variable (a MirroredVariable keeps one per device).
- `train()` on two devices with 100 training images and a batch of 32: steps
  per epoch and optimizer iterations, `metrics.json`, and the test loss and
  accuracy of the saved best weights evaluated again on one device on all
  test images (and the loss on the first 352).
- `keras-crl train TRAIN_ARGS --devices 1 --run-dir RUN_DIR`, run in this
  process (`keras_crl.cli.main`), for the test to compare with the same
  command at `--devices 2`, which it runs in a process of its own.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_crl import CompetingRatioLoss  # noqa: E402
from keras_crl import cli  # noqa: E402
from keras_crl import data as data_lib  # noqa: E402
from keras_crl import models as models_lib  # noqa: E402
from keras_crl.config import config_loss  # noqa: E402
from keras_crl.parallel import data_parallel  # noqa: E402
from keras_crl.parallel import for_training  # noqa: E402
from keras_crl.recipes import TorchSGD  # noqa: E402
from keras_crl.reproducible import numpy_initialize  # noqa: E402
from keras_crl.train import TrainConfig  # noqa: E402
from keras_crl.train import train  # noqa: E402

BACKEND = keras.backend.backend()
SEEN = []  # what SplitProbe records (a list attribute of a layer would be copied)


class SplitProbe(keras.layers.Layer):
    """Records, while the train step is traced, the batch one device gets.

    Appends `(per-device batch, global batch, devices)` to `SEEN`.
    """

    def call(self, x, training=None):
        if not training:
            return x
        if BACKEND == "jax":
            import jax

            def record(sharding):
                shard = sharding.shard_shape(x.shape)
                SEEN.append((shard[0], x.shape[0], len(sharding.device_set)))

            # Called at trace time with the sharding XLA gave the input.
            jax.debug.inspect_array_sharding(x, callback=record)
        else:
            import tensorflow as tf

            # Inside MirroredStrategy's replica function x is this replica's
            # share; the global batch is the share times the replicas.
            replicas = tf.distribute.get_replica_context().num_replicas_in_sync
            SEEN.append((x.shape[0], x.shape[0] * replicas, replicas))
        return x


def step(devices, x, y):
    SEEN.clear()
    with data_parallel(devices):
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                SplitProbe(),
                keras.layers.Conv2D(8, 3),
                keras.layers.BatchNormalization(momentum=0.9),
                keras.layers.ReLU(),
                keras.layers.Flatten(),
                keras.layers.Dense(10),
            ]
        )
        numpy_initialize(model, 0)
        trainer = for_training(model)
        trainer.compile(
            optimizer=TorchSGD(0.5, momentum=0.9, l2=5e-4),
            loss=CompetingRatioLoss(from_logits=True),
        )
        history = trainer.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
        return {
            "loss": history.history["loss"][0],
            "weights": weights,
            "seen": np.array(SEEN, dtype=np.int64).reshape(-1, 3),
            "replica_spread": replica_spread(model),
        }


def replica_spread(model):
    """Per variable, the largest difference between its replicas' copies."""
    spread = []
    for variable in model.weights:
        value = getattr(variable, "value", variable)
        copies = getattr(value, "values", None)  # tf.distribute's per-device copies
        if BACKEND != "tensorflow" or copies is None:
            spread.append(0.0)
            continue
        copies = [np.asarray(c.numpy()) for c in copies]
        spread.append(max(float(np.max(np.abs(c - copies[0]))) for c in copies))
    return np.array(spread)


class CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = []

    def on_epoch_begin(self, epoch, logs=None):
        self.steps.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.steps[-1] += 1

    def on_train_end(self, logs=None):
        self.iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))


def train_config(**kwargs):
    """A tiny training whose 100 images are not a multiple of the batch."""
    return TrainConfig(
        model="small_cnn",
        model_options={"width": 4},
        dataset="digits",
        epochs=1,
        batch_size=32,
        learning_rate=0.02,
        limit=100,
        devices=2,
        verbose=0,
        **kwargs,
    )


def train_dropping_last_batch(run_dir):
    """`train()` on two devices, 100 images in batches of 32: 3 steps, not 4.

    Returns the steps of each epoch and the optimizer's iterations.
    """
    counter = CountSteps()
    config = train_config(run_dir=str(run_dir))
    train(config, callbacks=[counter])
    return {
        "train_images": config.limit,
        "steps_per_epoch": counter.steps,
        "iterations": counter.iterations,
    }


def evaluated(run_dir):
    """What `metrics.json` says was tested, and the test loss of the saved
    best weights evaluated again on one device on all test images, and the
    loss on the first 352 (what dropping the partial batch would give)."""
    config = train_config()
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    ds = data_lib.load_dataset("digits", validation_split=config.validation_split, seed=config.seed)
    model = models_lib.get_model(
        "small_cnn", num_classes=ds.num_classes, input_shape=ds.input_shape, **config.model_options
    )
    model.load_weights(Path(run_dir) / "best.weights.h5")
    model.compile(loss=config_loss(config), metrics=["accuracy"])

    def test(count):
        batches = data_lib.BatchPipeline(
            ds.x_test[:count], ds.y_test[:count], config.batch_size, mean=ds.mean, std=ds.std
        )
        return model.evaluate(batches, verbose=0)

    loss_all, accuracy_all = test(len(ds.y_test))
    return {
        "test_total": len(ds.y_test),
        "test_images": metrics["test_images"],
        "test_binned": sum(metrics["test_calibration_bins"]["counts"]),
        "test_loss": metrics["test_loss"],
        "test_accuracy": metrics["test_accuracy"],
        "test_loss_first": test(len(ds.y_test) // 32 * 32)[0],
        "test_loss_all": loss_all,
        "test_accuracy_all": accuracy_all,
    }


def main(out, run_dir, train_args):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 32).astype("int32")
    multi = step(2, x, y)  # first: TensorFlow's CPU is split before it starts
    single = step(1, x, y)
    cli.main([*train_args, "--devices", "1", "--run-dir", run_dir])
    arrays = {
        "single_loss": single["loss"],
        "multi_loss": multi["loss"],
        "single_seen": single["seen"],
        "multi_seen": multi["seen"],
        "replica_spread": multi["replica_spread"],
    }
    for i, (a, b) in enumerate(zip(single["weights"], multi["weights"])):
        arrays[f"single{i}"], arrays[f"multi{i}"] = a, b
    with tempfile.TemporaryDirectory() as drop_dir:
        arrays.update(train_dropping_last_batch(drop_dir))
        arrays.update(evaluated(drop_dir))
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
