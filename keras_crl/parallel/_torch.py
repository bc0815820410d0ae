"""The PyTorch engine: `torch.nn.parallel.DistributedDataParallel`.

One process per device, started by `torchrun` (gloo on CPU, NCCL on GPUs);
`keras-crl train --backend torch --devices N` starts torchrun itself
(`keras_crl.cli.commands.torchrun_command`). Each process runs its own copy of the
model on its share of the batch: batch norm normalises with that share, and
`AverageReplicas` averages the moving statistics before every evaluation.
"""

import contextlib
import os

import keras
import numpy as np

from keras_crl.parallel.cluster import Process

# Each process trains its own copy of the model (DDP): it evaluates
# everything with it (its metrics are not reduced over the processes), and a
# checkpoint keeps each process's own statistics and metric totals.
SEPARATE_MODELS = True


def launched_by_torchrun():
    """Whether torchrun (or another launcher setting its variables) started us."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def _group():
    """`(rank, size)` of this process in torch's process group, else `(0, 1)`.

    Also asked on the other backends: `train` adds `AverageReplicas` and the
    checkpoint's collectives (`chief_decides`, `gather_to_chief`) on every
    backend, where there is no group and torch is not imported.
    """
    if keras.backend.backend() != "torch":
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def this_process():
    rank, size = _group()
    # torchrun's rank 0 also before the group is joined and after it is left.
    chief = int(os.environ["RANK"]) == 0 if launched_by_torchrun() else rank == 0
    return Process(rank, size, chief)


def join(cluster, message):
    if not launched_by_torchrun():
        raise ValueError(
            "Several processes on torch: start them with torchrun "
            "(`keras-crl train` does, see torchrun_command)."
        )
    # torchrun has joined the machines (`keras_crl.cli.commands.torchrun_command`).


def _several_machines():
    """Whether torchrun started processes on other machines than this one."""
    return launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > int(
        os.environ.get("LOCAL_WORLD_SIZE", 0)
    )


@contextlib.contextmanager
def data_parallel(devices):
    if devices == 1 and not _several_machines():
        yield
        return
    import torch
    import torch.distributed as dist

    if not launched_by_torchrun():
        raise ValueError(
            f"devices={devices} on the torch backend runs one process per device with "
            "DistributedDataParallel: start it with torchrun, e.g. `torchrun "
            f"--nproc-per-node={devices} -m keras_crl.cli train --backend torch "
            f"--devices {devices} ...` (`keras-crl train --devices {devices}` does this)."
        )
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if local != devices:
        raise ValueError(
            f"devices={devices}, but torchrun started {local} processes on this machine "
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


def for_training(model):
    if _group()[1] == 1:
        return model
    return TorchDataParallel(model)


alone = contextlib.nullcontext


def barrier():
    import torch.distributed as dist

    dist.barrier()


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


class AverageReplicas(keras.callbacks.Callback):
    """Keeps torch processes agreeing on what is not a gradient.

    Before every evaluation, averages the non-trainable weights (batch norm
    moving statistics, which each process updates from its own share) over
    the processes, as MirroredStrategy's mean aggregation does; at the end of
    every epoch, averages the logged training metrics, which are means over
    equal shares, into the metrics of the global batches. Put it first in the
    callback list: later callbacks then log and select on the global values.
    A no-op in a single process and on the other backends.
    """

    def _all_mean(self, array):
        import torch
        import torch.distributed as dist

        tensor = torch.as_tensor(np.asarray(array, dtype=np.float64))
        dist.all_reduce(tensor)
        return tensor.numpy() / dist.get_world_size()

    def on_test_begin(self, logs=None):
        if _group()[1] == 1:
            return
        for variable in self.model.non_trainable_weights:
            if "float" in str(variable.dtype):
                value = keras.ops.convert_to_numpy(variable)
                variable.assign(self._all_mean(value).astype(value.dtype))

    def on_epoch_end(self, epoch, logs=None):
        if _group()[1] == 1 or not logs:
            return
        keys = sorted(logs)
        means = self._all_mean([float(logs[k]) for k in keys])
        logs.update({k: float(m) for k, m in zip(keys, means)})


def chief_decides(flag):
    """The chief's `flag`, the same in every torch process (a single process: `flag`).

    For decisions every process must take at the same step, such as a
    checkpoint due by the chief's clock.
    """
    if _group()[1] == 1:
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
    rank, world = _group()
    if world == 1:
        return None
    import torch.distributed as dist

    gathered = [None] * world if rank == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered
