"""Two torch processes (gloo): a loss value and one SGD step, against one process.

    python -m torch.distributed.run --standalone --nproc-per-node 2 \
        -m tests.cross_backend.torch_ddp_worker OUT.npz

Rank 0 also trains the same step alone, outside DistributedDataParallel, and
writes both results.
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "torch"

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_crl import CompetingRatioLoss  # noqa: E402
from keras_crl import parallel  # noqa: E402
from keras_crl.data import BatchPipeline  # noqa: E402
from keras_crl.recipes import TorchSGD  # noqa: E402
from keras_crl.reproducible import numpy_initialise  # noqa: E402


def step(x, y):
    # No batch norm: per-replica batch statistics differ from the global
    # batch's by design; the point here is the loss and gradient reduction.
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(10),
    ])
    numpy_initialise(model, 0)
    trainer = parallel.for_training(model)
    trainer.compile(optimizer=TorchSGD(0.5, momentum=0.9, l2=5e-4),
                    loss=CompetingRatioLoss(from_logits=True))
    data = BatchPipeline(x, y, len(x), mean=[0.0], std=[1.0], drop_remainder=True)
    batches = parallel.shard(data)
    history = trainer.fit(batches, epochs=1, shuffle=False, verbose=0,
                          callbacks=[parallel.AverageReplicas()])
    weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
    # Each process must have trained on its share only, not the whole batch.
    return history.history["loss"][0], weights, type(trainer).__name__, len(batches[0][0])


def batch_norm_statistics(x, y):
    """Each process's batch-norm moving mean after an epoch with validation."""
    import torch.distributed as dist

    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.BatchNormalization(),
        keras.layers.Dense(10),
    ])
    numpy_initialise(model, 0)
    trainer = parallel.for_training(model)
    trainer.compile(optimizer=TorchSGD(0.1), loss=CompetingRatioLoss(from_logits=True))
    data = BatchPipeline(x, y, len(x), mean=[0.0], std=[1.0], drop_remainder=True)
    trainer.fit(parallel.shard(data), validation_data=data, epochs=1, shuffle=False,
                verbose=0, callbacks=[parallel.AverageReplicas()])
    means = [None] * dist.get_world_size()
    dist.all_gather_object(means, keras.ops.convert_to_numpy(model.non_trainable_weights[0]))
    return means


def main(out):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 32).astype("int32")
    with parallel.data_parallel(2):
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
        multi_loss, multi, wrapper, share = step(x, y)
        bn_means = batch_norm_statistics(x, y)
    if rank != 0:
        return
    single_loss, single, _, _ = step(x, y)  # the process group is gone: one process
    arrays = {"single_loss": single_loss, "multi_loss": multi_loss, "world": world,
              "wrapper": wrapper, "share": share,
              "bn_rank0": bn_means[0], "bn_rank1": bn_means[1]}
    for i, (a, b) in enumerate(zip(single, multi)):
        arrays[f"single{i}"], arrays[f"multi{i}"] = a, b
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
