"""Each process's equal share of every global batch.

Every process computes the same global batch (same order, same
augmentation) and feeds its own slice of it, so N processes train on
exactly the data one process would.
"""

import keras

from keras_crl.parallel.cluster import STATE
from keras_crl.parallel.cluster import this_process


def splits_batches(devices):
    """Whether every batch is split (over `devices` devices of this process,
    or over several processes): then it must divide evenly, and the last
    partial batch is dropped."""
    return devices > 1 or this_process().count > 1


class ShardBatches(keras.utils.PyDataset):
    """This process's equal share of every global batch of `pipeline`.

    Args:
        pipeline: A `BatchPipeline` with `drop_remainder=True`, or a
            `data.PaddedBatches` (its sample weights are split too).
        rank: This process's index.
        world: Number of processes; must divide the batch size.
    """

    def __init__(self, pipeline, rank, world):
        super().__init__()
        if pipeline.batch_size % world:
            raise ValueError(
                f"batch_size={pipeline.batch_size} must divide evenly over {world} processes."
            )
        self.pipeline = pipeline
        self.rank = rank
        self.share = pipeline.batch_size // world

    def __len__(self):
        return len(self.pipeline)

    def __getitem__(self, index):
        part = slice(self.rank * self.share, (self.rank + 1) * self.share)
        # (x, y), or (x, y, sample weights) from data.PaddedBatches.
        return tuple(array[part] for array in self.pipeline[index])

    def on_epoch_end(self):
        self.pipeline.on_epoch_end()


def shard(pipeline, training=True):
    """What this process feeds `fit` (or `evaluate`) of `pipeline`.

    Several processes: this process's `ShardBatches`, as every process
    computes the same global batches, unless the source reads only its own
    share already (`data.FolderStream` with `shard_count > 1`). Evaluation
    on torch is not sharded: each process evaluates everything with its own
    (equal) model.

    Args:
        pipeline: A `BatchPipeline`, with `drop_remainder=True` when there are
            several processes.
        training: Whether it feeds `fit` (`False`: `evaluate`).
    """
    process = this_process()
    if process.count == 1 or (not training and STATE.engine.SEPARATE_MODELS):
        return pipeline
    if getattr(pipeline, "shard_count", 1) == process.count:
        return pipeline
    return ShardBatches(pipeline, process.index, process.count)
