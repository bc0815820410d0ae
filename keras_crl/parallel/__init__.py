"""Data-parallel training with each backend's own engine.

- JAX (`_jax`): `keras.distribution.DataParallel` over the devices of one
  process, or of every process of a cluster joined with `join`
  (`jax.distributed`).
- TensorFlow (`_tensorflow`): `tf.distribute.MirroredStrategy` over the
  devices of one process, with synchronized batch norm (see `for_training`).
  Several processes: `tf.distribute.MultiWorkerMirroredStrategy`, one device
  per process, from every process's address (`Cluster.addresses`).
- PyTorch (`_torch`): `torch.nn.parallel.DistributedDataParallel`, one
  process per device, started by `torchrun` (gloo on CPU, NCCL on GPUs).
  `keras-crl train --backend torch --devices N` starts torchrun itself.

This package picks the running backend's engine module once, on import
(`STATE.engine`); every engine offers the same functions, and the ones here
hand over to it. `cluster` says who trains together (`Cluster`, `join`,
`this_process`); `sharding` gives each process its slice of the batch.

Several processes (several machines): `join(Cluster(...))` once, before
anything touches the backend's devices, then the same training on every
process; `devices` stays the devices of one process. Every process computes
the same global batch and feeds its own equal slice (`shard`); only the chief
(process 0) writes the run folder, which every process must be able to read
(a shared file system) to resume.

In all three, the batch size is the global batch: each replica computes the
loss's mean over its equal share and the gradients are averaged, so one step
equals the one-device step on the whole batch (tests/cross_backend prove it).
Batch norm: JAX (one program over the sharded global batch) and TensorFlow
(synchronized) normalise with the global batch's statistics, exactly as one
device; torch normalises with each process's share and averages the moving
statistics before every evaluation (`AverageReplicas`).
"""

import keras

from keras_crl.parallel import _jax
from keras_crl.parallel import _single
from keras_crl.parallel import _tensorflow
from keras_crl.parallel import _torch
from keras_crl.parallel._tensorflow import checks_epoch_ends_only
from keras_crl.parallel._torch import AverageReplicas
from keras_crl.parallel._torch import TorchDataParallel
from keras_crl.parallel._torch import chief_decides
from keras_crl.parallel._torch import gather_to_chief
from keras_crl.parallel._torch import launched_by_torchrun
from keras_crl.parallel.cluster import ENVIRONMENT
from keras_crl.parallel.cluster import STATE
from keras_crl.parallel.cluster import Cluster
from keras_crl.parallel.cluster import Process
from keras_crl.parallel.cluster import cluster_from_environment
from keras_crl.parallel.cluster import join
from keras_crl.parallel.cluster import this_process
from keras_crl.parallel.sharding import ShardBatches
from keras_crl.parallel.sharding import shard
from keras_crl.parallel.sharding import splits_batches

STATE.engine = {"jax": _jax, "tensorflow": _tensorflow, "torch": _torch}.get(
    keras.backend.backend(), _single
)

__all__ = [
    "ENVIRONMENT",
    "STATE",
    "AverageReplicas",
    "Cluster",
    "Process",
    "ShardBatches",
    "TorchDataParallel",
    "alone",
    "barrier",
    "checks_epoch_ends_only",
    "chief_decides",
    "cluster_from_environment",
    "data_parallel",
    "for_training",
    "gather_to_chief",
    "is_chief",
    "join",
    "launched_by_torchrun",
    "process_index_and_count",
    "rank",
    "shard",
    "splits_batches",
    "this_process",
]


def process_index_and_count():
    """`(index, count)` of this process among those training together
    (`this_process`).

    Example:

    >>> process_index_and_count()
    (0, 1)
    """
    process = this_process()
    return process.index, process.count


def is_chief():
    """Whether this process writes the run folder (`this_process`)."""
    return this_process().chief


def rank():
    """Whose own state this process restores from a checkpoint: its index
    among torch's processes, which each keep their own batch norm statistics
    and metric totals; 0 on the other backends, whose processes all hold the
    one replicated model."""
    return this_process().index if STATE.engine.SEPARATE_MODELS else 0


def data_parallel(devices):
    """Runs the body data-parallel over `devices` devices (1: as it is).

    JAX and TensorFlow: the model must be built and compiled inside. Torch:
    the process must have been started by torchrun with `WORLD_SIZE ==
    devices`; the process group is joined here and left at the end. On
    every backend pass the model through `for_training` before `compile`
    (TensorFlow: synchronized batch norm; torch: DistributedDataParallel).

    TensorFlow on a machine with one CPU and no accelerator: the CPU is split
    into `devices` logical CPUs (at most one per core), which only works
    before TensorFlow has initialised its devices (it stays split for the
    rest of the process).

    Args:
        devices: Number of data-parallel replicas.

    Returns:
        A context manager.

    Example:

    ```python
    with data_parallel(2):
        model = build()
        trainer = for_training(model)
        trainer.compile(...)
        trainer.fit(...)
    ```
    """
    return STATE.engine.data_parallel(devices)


def for_training(model):
    """The model `compile` and `fit` should see: `model` itself, or on torch
    under a process group, `model` run through DistributedDataParallel.

    Under a TensorFlow distribution strategy with several replicas, every
    `BatchNormalization` layer of `model` is switched to `synchronized=True`
    (global-batch statistics, all-reduced over the replicas), so a step
    equals the one-device step: per-replica statistics would normalise each
    share with its own moments, and each replica would keep its own moving
    statistics in its copy of the variable (MirroredStrategy does not
    aggregate assignments of non-trainable variables made in a replica), so
    replicas would evaluate different models and only the first one's would
    be saved.

    Weights are shared with `model` (same variables, same order), so save
    and load them through `model`.
    """
    return STATE.engine.for_training(model)


def alone():
    """A context in which the body, which only the chief runs (writing
    files), runs as one process.

    JAX with several processes: outside the cluster-wide distribution, where
    creating a variable (Keras' `save_weights` makes a throwaway optimizer)
    is a collective that the other processes would never join. TensorFlow
    across processes: a variable created in the body is created outside the
    strategy's scope.
    """
    return STATE.engine.alone()


def barrier():
    """Waits for every process (a no-op in a single process)."""
    if this_process().count > 1:
        STATE.engine.barrier()
