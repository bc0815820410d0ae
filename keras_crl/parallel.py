"""Data-parallel training with each backend's own engine.

- JAX: `keras.distribution.DataParallel` over the devices of one process.
- TensorFlow: `tf.distribute.MirroredStrategy` over the devices of one
  process, with synchronized batch norm (see `for_training`). A process that
  sees only one CPU splits it into N logical CPUs, as JAX's
  `--xla_force_host_platform_device_count=N` does.
- PyTorch: `torch.nn.parallel.DistributedDataParallel`, one process per
  device, started by `torchrun` (gloo on CPU, NCCL on GPUs). `keras-crl train
  --backend torch --devices N` starts torchrun itself.

In all three, the batch size is the global batch: each replica computes the
loss's mean over its equal share and the gradients are averaged, so one step
equals the one-device step on the whole batch (tests/cross_backend prove it).
Batch norm: JAX (one program over the sharded global batch) and TensorFlow
(synchronized) normalise with the global batch's statistics, exactly as one
device; torch normalises with each process's share and averages the moving
statistics before every evaluation (`AverageReplicas`).
"""

import contextlib
import os
import sys

import keras
import numpy as np

from keras_crl import _keras_compat


def _torch_world():
    """`(rank, world_size)` of the running torch process group, else `(0, 1)`."""
    if keras.backend.backend() != "torch":
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_chief():
    """Whether this process writes the run folder (rank 0, or the only process)."""
    if keras.backend.backend() == "torch" and launched_by_torchrun():
        # Also true before the process group is joined and after it is left.
        return int(os.environ["RANK"]) == 0
    return True


def launched_by_torchrun():
    """Whether torchrun (or another launcher setting its variables) started us."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def torchrun_command(devices, argv):
    """The command that reruns `python -m keras_crl.cli argv` under torchrun.

    Args:
        devices: Processes to start, one per device.
        argv: The command line arguments, without the program name.

    Returns:
        A list for `subprocess` / `os.execv`.
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={devices}",
        "-m",
        "keras_crl.cli",
        *argv,
    ]


@contextlib.contextmanager
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

    Example:

    ```python
    with data_parallel(2):
        model = build()
        trainer = for_training(model)
        trainer.compile(...)
        trainer.fit(...)
    ```
    """
    if devices == 1:
        yield
        return
    backend = keras.backend.backend()
    if backend == "torch":
        with _torch_process_group(devices):
            yield
        return
    if backend == "tensorflow":
        _split_tensorflow_cpu(devices)
    available = keras.distribution.list_devices()
    if devices > len(available):
        how = (
            "JAX can split the host with XLA_FLAGS=--xla_force_host_platform_device_count=N "
            "set before it starts"
            if backend == "jax"
            else f"TensorFlow splits a single CPU into N <= {_cores()} (cores) logical CPUs "
            "when nothing has initialised its devices before data_parallel(N)"
        )
        raise ValueError(
            f"Asked for devices={devices}, but this process sees {len(available)}: "
            f"{available}. (On CPU, {how}.)"
        )
    if backend == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=available[:devices])
        )
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
    else:
        with _mirrored_strategy(tuple(available[:devices])).scope():
            yield


_STRATEGIES = {}


def _mirrored_strategy(devices):
    """One MirroredStrategy per device set for the whole process.

    With a new strategy for each training, the synchronized batch norm of a
    second training in the same process failed: TensorFlow matched its
    all-reduces with the first model's ("Shape mismatch in the collective
    instance 100"), as both strategies number their collectives alike.
    """
    import tensorflow as tf

    if devices not in _STRATEGIES:
        # Keras lists "cpu:0"; TensorFlow wants "/cpu:0".
        _STRATEGIES[devices] = tf.distribute.MirroredStrategy([f"/{d}" for d in devices])
    return _STRATEGIES[devices]


def _cores():
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _split_tensorflow_cpu(devices):
    """On a host with one CPU and nothing else, makes `devices` logical CPUs.

    What `--xla_force_host_platform_device_count` is for JAX: it lets
    MirroredStrategy run (and be tested) on one CPU. At most one logical CPU
    per core (more replicas than cores gain nothing). Left alone when there
    is an accelerator, more than one CPU, a logical split already, or when
    TensorFlow has already initialised its devices (it cannot be changed
    then); `data_parallel` then reports how many devices it sees.
    """
    import tensorflow as tf

    physical = tf.config.list_physical_devices()
    cpus = [d for d in physical if d.device_type == "CPU"]
    if not 2 <= devices <= _cores() or len(physical) != 1 or len(cpus) != 1:
        return
    if tf.config.get_logical_device_configuration(cpus[0]):
        return
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * devices
        )
    except RuntimeError:
        pass  # Initialised already.


@contextlib.contextmanager
def _torch_process_group(devices):
    import torch
    import torch.distributed as dist

    if not launched_by_torchrun():
        raise ValueError(
            f"devices={devices} on the torch backend runs one process per device with "
            "DistributedDataParallel: start it with torchrun, e.g. `torchrun "
            f"--nproc-per-node={devices} -m keras_crl.cli train --backend torch "
            f"--devices {devices} ...` (`keras-crl train --devices {devices}` does this)."
        )
    world = int(os.environ["WORLD_SIZE"])
    if world != devices:
        raise ValueError(
            f"devices={devices}, but torchrun started {world} processes "
            "(--nproc-per-node); they must be equal."
        )
    if dist.is_initialized():
        yield
        return
    if torch.cuda.is_available():
        # Before Keras makes any tensor: "cuda" then means this rank's GPU.
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier():
    """Waits for every torch process (a no-op in a single process)."""
    if _torch_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()


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
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            for layer in _keras_compat.flatten_layers(model):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized = True
        return model
    if _torch_world()[1] == 1:
        return model
    return TorchDataParallel(model)


class TorchDataParallel(keras.Model):
    """Runs a Keras model through `torch.nn.parallel.DistributedDataParallel`.

    Keras' torch `train_step` calls the model, then `loss.backward()`: with
    the call going through DDP, the backward averages the gradients of all
    processes before the optimizer applies them. DDP also broadcasts rank
    0's weights when it is built, so all processes start equal.

    Args:
        model: A built Keras model (torch backend), inside a process group.
    """

    def __init__(self, model):
        from torch.nn.parallel import DistributedDataParallel

        super().__init__(name=f"{model.name}_ddp")
        self.module = model
        # Not tracked as a layer: DDP is a plain torch module around `model`.
        object.__setattr__(self, "_ddp", DistributedDataParallel(model))

    def call(self, x, training=False):
        return self._ddp(x, training=training)


class ShardBatches(keras.utils.PyDataset):
    """This process's equal share of every global batch of `pipeline`.

    Every process computes the same global batch (same order, same
    augmentation) and keeps its slice, so N processes train on exactly the
    data one process would.

    Args:
        pipeline: A `BatchPipeline` with `drop_remainder=True`.
        rank: This process's index.
        world: Number of processes; must divide the batch size.
    """

    def __init__(self, pipeline, rank, world):
        super().__init__()
        if pipeline.batch_size % world:
            raise ValueError(
                f"batch_size={pipeline.batch_size} must divide evenly over devices={world}."
            )
        self.pipeline = pipeline
        self.rank = rank
        self.share = pipeline.batch_size // world

    def __len__(self):
        return len(self.pipeline)

    def __getitem__(self, index):
        x, y = self.pipeline[index]
        part = slice(self.rank * self.share, (self.rank + 1) * self.share)
        return x[part], y[part]

    def on_epoch_end(self):
        self.pipeline.on_epoch_end()


def shard(pipeline):
    """`pipeline`, or this torch process's `ShardBatches` of it."""
    rank, world = _torch_world()
    return pipeline if world == 1 else ShardBatches(pipeline, rank, world)


class AverageReplicas(keras.callbacks.Callback):
    """Keeps torch processes agreeing on what is not a gradient.

    Before every evaluation, averages the non-trainable weights (batch norm
    moving statistics, which each process updates from its own share) over
    the processes, as MirroredStrategy's mean aggregation does; at the end of
    every epoch, averages the logged training metrics, which are means over
    equal shares, into the metrics of the global batches. Put it first in the
    callback list: later callbacks then log and select on the global values.
    A no-op in a single process.
    """

    def _all_mean(self, array):
        import torch
        import torch.distributed as dist

        tensor = torch.as_tensor(np.asarray(array, dtype=np.float64))
        dist.all_reduce(tensor)
        return tensor.numpy() / dist.get_world_size()

    def on_test_begin(self, logs=None):
        if _torch_world()[1] == 1:
            return
        for variable in self.model.non_trainable_weights:
            if "float" in str(variable.dtype):
                value = keras.ops.convert_to_numpy(variable)
                variable.assign(self._all_mean(value).astype(value.dtype))

    def on_epoch_end(self, epoch, logs=None):
        if _torch_world()[1] == 1 or not logs:
            return
        keys = sorted(logs)
        means = self._all_mean([float(logs[k]) for k in keys])
        logs.update({k: float(m) for k, m in zip(keys, means)})


def chief_decides(flag):
    """The chief's `flag`, the same in every torch process (a single process: `flag`).

    For decisions every process must take at the same step, such as a
    checkpoint due by the chief's clock.
    """
    if _torch_world()[1] == 1:
        return bool(flag)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([int(bool(flag))])
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def gather_to_chief(obj):
    """Every torch process's `obj`, in rank order, on the chief; None elsewhere
    and in a single process.

    A collective: it returns on the chief only once every process has
    reached it.
    """
    rank, world = _torch_world()
    if world == 1:
        return None
    import torch.distributed as dist

    gathered = [None] * world if rank == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def rank():
    """This torch process's rank (0 in a single process)."""
    return _torch_world()[0]
