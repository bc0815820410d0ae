"""Two torch processes (gloo) against one; rank 0 writes OUT.npz.

    python -m torch.distributed.run --standalone --nproc-per-node 2 \
        -m tests.cross_backend.torch_ddp_worker OUT.npz RUN_DIR TRAIN_ARGS...

What it records, for `test_multi_device.py` to judge:

- `step`: one SGD step on a global batch of 32 through
  DistributedDataParallel (`parallel.for_training`, `parallel.shard`,
  `parallel.AverageReplicas`): the logged loss and accuracy and the weights,
  and the number of images each process's batch held; rank 0 then trains the
  same step alone, outside any process group.
- Batch norm: each process's moving statistics right before
  `AverageReplicas` averages them (at the start of validation) and right
  after, with the inputs, so the test can recompute what each process should
  have computed from its own half.
- `train()` on two processes with 100 training images and a batch of 32:
  each process's steps per epoch and optimizer iterations, and what
  `metrics.json` says was tested against the saved weights evaluated again
  (as `multi_device_worker` does for JAX and TensorFlow).
- Rank 0, after the process group: `keras-crl train TRAIN_ARGS --devices 1
  --run-dir RUN_DIR` in this process (`keras_crl.cli.main`), for the test to
  compare with the same command at `--devices 2`.
"""

import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_crl import CompetingRatioLoss  # noqa: E402
from keras_crl import cli  # noqa: E402
from keras_crl import parallel  # noqa: E402
from keras_crl.data import BatchPipeline  # noqa: E402
from keras_crl.recipes import TorchSGD  # noqa: E402
from keras_crl.reproducible import numpy_initialize  # noqa: E402
from tests.cross_backend.multi_device_worker import evaluated  # noqa: E402
from tests.cross_backend.multi_device_worker import train_dropping_last_batch  # noqa: E402


def step(x, y):
    # No batch norm: each process normalises its share with its own batch
    # statistics (by design), so only a model without it can equal one
    # process; the point here is the loss, metric and gradient reduction.
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    numpy_initialize(model, 0)
    trainer = parallel.for_training(model)
    trainer.compile(
        optimizer=TorchSGD(0.5, momentum=0.9, l2=5e-4),
        loss=CompetingRatioLoss(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    data = BatchPipeline(x, y, len(x), mean=[0.0], std=[1.0], drop_remainder=True)
    batches = parallel.shard(data)
    history = trainer.fit(
        batches, epochs=1, shuffle=False, verbose=0, callbacks=[parallel.AverageReplicas()]
    )
    weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    return {
        "loss": history.history["loss"][0],
        "accuracy": history.history["accuracy"][0],
        "weights": weights,
        "wrapper": type(trainer).__name__,
        "share": len(batches[0][0]),
    }


class Snapshot(keras.callbacks.Callback):
    """The non-trainable weights at the start of validation. Put before
    `AverageReplicas`, it sees each process's own values."""

    def on_test_begin(self, logs=None):
        self.values = [keras.ops.convert_to_numpy(v) for v in self.model.non_trainable_weights]


def batch_norm_statistics(x, y):
    """Each process's moving mean and variance before and after averaging.

    Batch norm sits right after the input, so after one step from its
    initial moving statistics (mean 0, variance 1, momentum 0.99) each
    process's are a known function of the images of its own share.
    """
    import torch.distributed as dist

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.BatchNormalization(),
            keras.layers.Dense(10),
        ]
    )
    numpy_initialize(model, 0)
    trainer = parallel.for_training(model)
    trainer.compile(optimizer=TorchSGD(0.1), loss=CompetingRatioLoss(from_logits=True))
    data = BatchPipeline(x, y, len(x), mean=[0.0], std=[1.0], drop_remainder=True)
    before = Snapshot()
    trainer.fit(
        parallel.shard(data),
        validation_data=data,
        epochs=1,
        shuffle=False,
        verbose=0,
        callbacks=[before, parallel.AverageReplicas()],
    )
    mine = {
        "before": before.values,
        "after": [keras.ops.convert_to_numpy(v) for v in model.non_trainable_weights],
    }
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return everyone


def main(out, cli_run_dir, train_args):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 32).astype("int32")
    run_dir = Path(out).with_suffix(".run")  # the same folder for both processes
    with parallel.data_parallel(2):
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
        multi = step(x, y)
        bn = batch_norm_statistics(x, y)
        dropping = [None] * world
        dist.all_gather_object(dropping, train_dropping_last_batch(run_dir))
    if rank != 0:
        return
    single = step(x, y)  # the process group is gone: one process
    cli.main([*train_args, "--devices", "1", "--run-dir", cli_run_dir])
    arrays = {
        "single_loss": single["loss"],
        "multi_loss": multi["loss"],
        "single_accuracy": single["accuracy"],
        "multi_accuracy": multi["accuracy"],
        "world": world,
        "wrapper": multi["wrapper"],
        "share": multi["share"],
        "single_share": single["share"],
        "x": x,
        "train_images": dropping[0]["train_images"],
        "steps_per_epoch": [d["steps_per_epoch"] for d in dropping],
        "iterations": [d["iterations"] for d in dropping],
        **evaluated(run_dir),
    }
    for r, statistics in enumerate(bn):
        for when in ("before", "after"):
            arrays[f"bn_mean_{when}{r}"], arrays[f"bn_var_{when}{r}"] = statistics[when]
    for i, (a, b) in enumerate(zip(single["weights"], multi["weights"])):
        arrays[f"single{i}"], arrays[f"multi{i}"] = a, b
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
