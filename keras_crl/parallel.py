"""Data-parallel training with each backend's own engine.

- JAX: `keras.distribution.DataParallel` over the devices of one process,
  or of every process of a cluster joined with `join` (`jax.distributed`).
- TensorFlow: `tf.distribute.MirroredStrategy` over the devices of one
  process, with synchronized batch norm (see `for_training`). A process that
  sees only one CPU splits it into N logical CPUs, as JAX's
  `--xla_force_host_platform_device_count=N` does. Several processes:
  `tf.distribute.MultiWorkerMirroredStrategy`, one device per process, from
  every process's address (`Cluster.addresses`).
- PyTorch: `torch.nn.parallel.DistributedDataParallel`, one process per
  device, started by `torchrun` (gloo on CPU, NCCL on GPUs). `keras-crl train
  --backend torch --devices N` starts torchrun itself.

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

import contextlib
import dataclasses
import math
import os
import sys
import threading

import keras
import numpy as np

from keras_crl import _keras_compat


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The processes that train together, as every one of them sees it.

    Args:
        coordinator: `HOST:PORT` of process 0, which every process must reach.
        num_processes: Processes in the cluster (torch: machines, torchrun's
            nodes, each starting one process per device).
        process_id: This process's index, `0 <= process_id < num_processes`;
            process 0 is the chief.
        timeout: Seconds to wait for every process to join before failing.
        addresses: Every process's `HOST:PORT`, in process order (the first
            is the coordinator), or `()`. TensorFlow needs them all: each
            process serves collectives at its own address.

    Example:

    >>> Cluster("10.0.0.1:1234", num_processes=2, process_id=1).coordinator
    '10.0.0.1:1234'
    """

    coordinator: str
    num_processes: int
    process_id: int
    timeout: float = 300.0
    addresses: tuple = ()

    @classmethod
    def of(cls, addresses, num_processes, process_id, timeout=300.0):
        """The `Cluster` of `addresses`: process 0's `HOST:PORT`, or every
        process's, comma-separated in process order.

        Example:

        >>> Cluster.of("h0:1234,h1:1234", 2, 1).addresses
        ('h0:1234', 'h1:1234')
        """
        listed = tuple(a.strip() for a in addresses.split(","))
        return cls(listed[0], num_processes, process_id, timeout, listed if len(listed) > 1 else ())

    def __post_init__(self):
        for address in (self.coordinator, *self.addresses):
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"An address must be HOST:PORT. Received: {address!r}")
        if not isinstance(self.num_processes, int) or self.num_processes < 1:
            raise ValueError(
                f"num_processes must be a positive integer. Received: {self.num_processes!r}"
            )
        if not isinstance(self.process_id, int) or not 0 <= self.process_id < self.num_processes:
            raise ValueError(
                f"process_id must be in [0, {self.num_processes}). Received: {self.process_id!r}"
            )
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive. Received: {self.timeout!r}")
        if self.addresses and (
            len(self.addresses) != self.num_processes or self.addresses[0] != self.coordinator
        ):
            raise ValueError(
                f"{len(self.addresses)} addresses ({', '.join(self.addresses)}) for "
                f"{self.num_processes} processes: list every process's HOST:PORT, process "
                "0's first."
            )


# Keras' own variables (`keras.distribution.initialize` reads them too).
ENVIRONMENT = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def cluster_from_environment(environ=None, timeout=300.0):
    """The `Cluster` Keras' `KERAS_DISTRIBUTION_*` variables describe, else `None`.

    `KERAS_DISTRIBUTION_JOB_ADDRESSES` may list every process's address
    (comma-separated; TensorFlow needs them all); the first is the coordinator.

    Example:

    >>> cluster = cluster_from_environment({
    ...     "KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.1:1234,10.0.0.2:1234",
    ...     "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
    ...     "KERAS_DISTRIBUTION_PROCESS_ID": "1",
    ... })
    >>> cluster.coordinator, cluster.num_processes, cluster.process_id
    ('10.0.0.1:1234', 2, 1)
    """
    environ = os.environ if environ is None else environ
    values = [environ.get(name) for name in ENVIRONMENT]
    if not any(values):
        return None
    if not all(values):
        missing = [n for n, v in zip(ENVIRONMENT, values) if not v]
        raise ValueError(
            f"Multi-process training needs all of {', '.join(ENVIRONMENT)}; "
            f"missing: {', '.join(missing)}."
        )
    addresses, count, index = values
    return Cluster.of(addresses, int(count), int(index), timeout)


_JOINED = []  # the Cluster this process joined


def join(cluster):
    """Makes this process one of `cluster`'s (a no-op for one process).

    Call it once per process, before anything touches the backend's devices;
    it cannot be undone. JAX: `jax.distributed.initialize` with the
    coordinator, process count and index, as `keras.distribution.initialize`
    calls it (here directly, to bound the wait with `initialization_timeout`).
    TensorFlow: a `MultiWorkerMirroredStrategy` over `cluster.addresses`, one
    device per process, which `data_parallel` then enters; each process
    serves at its own address.

    If the processes have not all joined within `cluster.timeout` seconds (the
    coordinator unreachable, fewer processes started than `num_processes`),
    the process ends with exit status 2 and one line on stderr naming the
    coordinator: the engine's own failure at that point is an abort from C++
    that no Python code can catch, with no address in it. (TensorFlow: a
    `ValueError` naming it and the addresses that did not answer, raised
    before TensorFlow starts waiting, which it does holding the interpreter.)

    Args:
        cluster: A `Cluster`, or `None` (one process).
    """
    if cluster is None or cluster.num_processes == 1:
        return
    if _JOINED:
        if _JOINED[0] != cluster:
            raise ValueError(f"This process already joined {_JOINED[0]}; cannot join {cluster}.")
        return
    backend = keras.backend.backend()
    if backend == "torch" and launched_by_torchrun():
        return  # torchrun has joined the machines (`torchrun_command`)
    if backend == "torch":
        raise ValueError(
            "Several processes on torch: start them with torchrun "
            "(`keras-crl train` does, see torchrun_command)."
        )
    if backend not in ("jax", "tensorflow"):
        raise ValueError(f"Several processes on {backend}: not implemented (JAX, TF, torch only).")
    if backend == "tensorflow" and not cluster.addresses:
        raise ValueError(
            "Several processes on tensorflow: MultiWorkerMirroredStrategy needs every "
            f"process's address, not only the coordinator's ({cluster.coordinator}): "
            "--coordinator HOST0:PORT0,HOST1:PORT1,... (process order, the same on every "
            "process) or KERAS_DISTRIBUTION_JOB_ADDRESSES listing them all."
        )
    message = (
        f"process {cluster.process_id} of {cluster.num_processes} could not join the "
        f"cluster at coordinator {cluster.coordinator} within {cluster.timeout:g} s: is "
        f"process 0 running there, reachable from here, and are all {cluster.num_processes} "
        "processes started with the same --num-processes?"
    )
    if backend == "tensorflow":
        _meet(cluster, message)
    with _deadline(cluster.timeout, message):
        if backend == "tensorflow":
            _TF_STRATEGY.append(_multi_worker_strategy(cluster))
            # The first collective returns once every process has joined.
            _tf_all_sum(1.0)
        else:
            import jax

            jax.distributed.initialize(
                coordinator_address=cluster.coordinator,
                num_processes=cluster.num_processes,
                process_id=cluster.process_id,
                # Ours (above) fires first, with the address in its message.
                initialization_timeout=int(cluster.timeout) + 30,
            )
    # (keras.distribution.initialize then agrees on a global seed for Keras'
    # random streams; nothing here draws from them: make_deterministic seeds.)
    _JOINED.append(cluster)


@contextlib.contextmanager
def _deadline(seconds, message):
    """Ends the process (status 2, `message` on stderr) if the body has not
    returned within `seconds`: for waits inside an engine that a Python
    exception cannot interrupt."""
    done = threading.Event()

    def watch():
        if not done.wait(seconds):
            sys.stderr.write(f"keras-crl: error: {message}\n")
            sys.stderr.flush()
            os._exit(2)

    threading.Thread(target=watch, name="keras-crl-deadline", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def _meet(cluster, message):
    """Returns once every other process of `cluster` answers at its address,
    within `cluster.timeout` seconds, else raises `ValueError(message)`.

    TensorFlow waits for the other processes inside C++ code that holds the
    interpreter, so no watchdog thread (`_deadline`) can run meanwhile: the
    processes first meet here, each listening at its own address (where
    TensorFlow then serves) until it has reached all the others.
    """
    import socket
    import time

    own = cluster.addresses[cluster.process_id].rpartition(":")[2]
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", int(own)))
        listener.listen(cluster.num_processes)
    except OSError as error:
        listener.close()
        raise ValueError(
            f"process {cluster.process_id} cannot listen at its address "
            f"{cluster.addresses[cluster.process_id]}: {error}"
        ) from None
    end = time.monotonic() + cluster.timeout
    waiting = [a for i, a in enumerate(cluster.addresses) if i != cluster.process_id]
    try:
        while waiting:
            host, _, port = waiting[0].rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                waiting.pop(0)
            except OSError:
                if time.monotonic() > end:
                    raise ValueError(f"{message} (no answer at {', '.join(waiting)})") from None
                time.sleep(0.1)
    finally:
        listener.close()


_TF_STRATEGY = []  # the MultiWorkerMirroredStrategy of the cluster joined


def _multi_worker_strategy(cluster):
    """A `MultiWorkerMirroredStrategy` over `cluster`, one device per process,
    that distributes each process's dataset as it is.

    Keras' TensorFlow trainer hands every dataset to
    `experimental_distribute_dataset`, which would split each batch again
    into one piece per replica of the whole cluster and shard the pieces over
    the processes; here every process already feeds exactly its own share of
    the global batch (`shard`), so the dataset goes through
    `distribute_datasets_from_function`, which neither rebatches nor shards.
    """
    import tensorflow as tf

    class OwnShards(tf.distribute.MultiWorkerMirroredStrategy):
        def experimental_distribute_dataset(self, dataset, options=None):
            return self.distribute_datasets_from_function(lambda _: dataset, options)

        def reduce(self, reduce_op, value, axis):
            # Keras 3's trainer reduces across workers what this strategy
            # does not take: a structure (the first batch, for its shapes),
            # and each replica's scalar logs over axis 0 (tensorflow#72388;
            # the mean over the replicas is meant). One leaf at a time.
            def one(leaf):
                scalar = all(v.shape.rank == 0 for v in self.experimental_local_results(leaf))
                return super(OwnShards, self).reduce(reduce_op, leaf, None if scalar else axis)

            return tf.nest.map_structure(one, value)

    gpus = tf.config.list_physical_devices("GPU")
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": list(cluster.addresses)}),
        task_type="worker",
        task_id=cluster.process_id,
        num_accelerators={"GPU": 1} if gpus else {},
        rpc_layer="grpc",
    )
    return OwnShards(cluster_resolver=resolver)


def _tf_all_sum(value):
    """`value` summed over the processes of the TensorFlow cluster (a collective)."""
    import tensorflow as tf

    strategy = _TF_STRATEGY[0]
    total = strategy.reduce(
        "SUM", strategy.run(lambda: tf.constant(float(value), tf.float32)), axis=None
    )
    return float(total)


def process_index_and_count():
    """`(index, count)` of this process among those training together.

    `(0, 1)` in a single process. JAX: the cluster `join` joined; torch: the
    process group's rank and size (one process per device). A data source
    that reads only its part of the data keys it by these.

    Example:

    >>> process_index_and_count()
    (0, 1)
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if jax.distributed.is_initialized():
            return jax.process_index(), jax.process_count()
        return 0, 1
    if backend == "torch":
        return _torch_world()
    if _TF_STRATEGY:
        return _JOINED[0].process_id, _JOINED[0].num_processes
    return 0, 1


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
    return process_index_and_count()[0] == 0


def splits_batches(devices):
    """Whether every batch is split (over `devices` devices of this process,
    or over several processes): then it must divide evenly, and the last
    partial batch is dropped."""
    return devices > 1 or process_index_and_count()[1] > 1


def _torch_several_machines():
    """Whether torchrun started processes on other machines than this one."""
    return (
        keras.backend.backend() == "torch"
        and launched_by_torchrun()
        and int(os.environ["WORLD_SIZE"]) > int(os.environ.get("LOCAL_WORLD_SIZE", 0))
    )


def launched_by_torchrun():
    """Whether torchrun (or another launcher setting its variables) started us."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def torchrun_command(devices, argv, cluster=None):
    """The command that reruns `python -m keras_crl.cli argv` under torchrun.

    Args:
        devices: Processes to start on this machine, one per device.
        argv: The command line arguments, without the program name.
        cluster: Several machines: a `Cluster` of one process per machine
            (torchrun's nodes; process 0's machine holds the rendezvous), each
            starting `devices` processes. `None`: this machine alone.

    Returns:
        A list for `subprocess` / `os.execv`.

    Example:

    >>> cluster = Cluster("10.0.0.1:29500", num_processes=2, process_id=1, timeout=60)
    >>> torchrun_command(2, ["train"], cluster)[3:6]
    ['--nnodes=2', '--node-rank=1', '--master-addr=10.0.0.1']
    >>> torchrun_command(2, ["train"], cluster)[6:8]
    ['--master-port=29500', '--rdzv-conf=timeout=60']
    """
    if cluster is None:
        where = ["--standalone"]
    else:
        host, _, port = cluster.coordinator.rpartition(":")
        # Static rendezvous: ranks follow --node-rank, so process 0 is the chief.
        where = [
            f"--nnodes={cluster.num_processes}",
            f"--node-rank={cluster.process_id}",
            f"--master-addr={host}",
            f"--master-port={port}",
            f"--rdzv-conf=timeout={math.ceil(cluster.timeout)}",
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *where,
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
    backend = keras.backend.backend()
    if backend == "jax" and process_index_and_count()[1] > 1:
        with _jax_cluster_parallel(devices):
            yield
        return
    if backend == "tensorflow" and _TF_STRATEGY:
        if devices != 1:
            raise ValueError(
                f"devices={devices}: TensorFlow across processes trains on one device per "
                "process (start one process per device, e.g. with CUDA_VISIBLE_DEVICES)."
            )
        with _TF_STRATEGY[0].scope():
            yield
        return
    if devices == 1 and not _torch_several_machines():
        yield
        return
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
            keras.distribution.DataParallel(devices=available[:devices], auto_shard_dataset=False)
        )
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)
    else:
        with _mirrored_strategy(tuple(available[:devices])).scope():
            yield


@contextlib.contextmanager
def _jax_cluster_parallel(devices):
    """`DataParallel` over the first `devices` devices of every process.

    Each process feeds its own slice of the global batch (`shard`), which
    Keras' JAX trainer places with `jax.make_array_from_process_local_data`;
    `auto_shard_dataset=False` says the data is sharded already.
    """
    import jax

    chosen = []
    for process in range(jax.process_count()):
        own = [d for d in jax.devices() if d.process_index == process]
        if devices > len(own):
            raise ValueError(
                f"Asked for devices={devices} per process, but process {process} has "
                f"{len(own)}: {own}."
            )
        chosen += own[:devices]
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(
            devices=[f"{d.platform}:{d.id}" for d in chosen], auto_shard_dataset=False
        )
    )
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


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


@contextlib.contextmanager
def alone():
    """Runs the body, which only the chief runs (writing files), as one process.

    JAX with several processes: outside the cluster-wide distribution, where
    creating a variable (Keras' `save_weights` makes a throwaway optimizer)
    is a collective that the other processes would never join. Reading the
    replicated weights needs no other process. TensorFlow across processes:
    a variable created in the body is created in a thread of its own, outside
    the strategy's scope (which belongs to the thread that entered it).
    """
    if _TF_STRATEGY:
        with _tf_variables_outside_strategy():
            yield
        return
    if keras.backend.backend() != "jax" or process_index_and_count()[1] == 1:
        yield
        return
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


@contextlib.contextmanager
def _tf_variables_outside_strategy():
    import tensorflow as tf

    def create(next_creator, **kwargs):
        made = []
        thread = threading.Thread(target=lambda: made.append(tf.Variable(**kwargs)))
        thread.start()
        thread.join()
        return made[0]

    with tf.variable_creator_scope(create):
        yield


def barrier():
    """Waits for every process (a no-op in a single process)."""
    if process_index_and_count()[1] == 1:
        return
    if _TF_STRATEGY:
        _tf_all_sum(0.0)
    elif keras.backend.backend() == "jax":
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("keras_crl.parallel.barrier")
    else:
        import torch.distributed as dist

        dist.barrier()


def checks_epoch_ends_only(checkpoint_steps, checkpoint_seconds, start_step):
    """Raises unless the run checkpoints at epoch ends only, when TensorFlow
    trains across processes.

    There, a metric total is all-reduced over the processes whenever it is
    read, so a checkpoint inside an epoch (which holds the totals) would be a
    collective that only the chief joins, and restoring totals into every
    process would count them once per process.
    """
    if not _TF_STRATEGY or not (checkpoint_steps or checkpoint_seconds or start_step):
        return
    raise ValueError(
        "TensorFlow across processes checkpoints at epoch ends only: pass "
        "--checkpoint-every epoch (checkpoint_steps=None, checkpoint_seconds=None), "
        "and resume from an epoch-end state.npz"
        + (f" (this one stops at step {start_step} of an epoch)." if start_step else ".")
    )


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
                f"batch_size={pipeline.batch_size} must divide evenly over {world} processes."
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
    index, count = process_index_and_count()
    if count == 1 or (not training and keras.backend.backend() == "torch"):
        return pipeline
    if getattr(pipeline, "shard_count", 1) == count:
        return pipeline
    return ShardBatches(pipeline, index, count)


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
