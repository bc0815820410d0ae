"""The TensorFlow engine: `tf.distribute.MirroredStrategy` in one process,
`MultiWorkerMirroredStrategy` across processes.

In one process, over its devices, with synchronized batch norm (see
`for_training`). A process that sees only one CPU splits it into N logical
CPUs, as JAX's `--xla_force_host_platform_device_count=N` does. Several
processes: one device per process, from every process's address
(`Cluster.addresses`).
"""

import contextlib
import os
import threading

import keras

from keras_crl import _keras_compat
from keras_crl.parallel.cluster import STATE
from keras_crl.parallel.cluster import Process
from keras_crl.parallel.cluster import deadline

# One model, replicated: every process evaluates its share and holds the
# same weights and statistics.
SEPARATE_MODELS = False


def this_process():
    cluster = STATE.joined
    if cluster is None:
        return Process(0, 1, True)
    return Process(cluster.process_id, cluster.num_processes, cluster.process_id == 0)


def join(cluster, message):
    if not cluster.addresses:
        raise ValueError(
            "Several processes on tensorflow: MultiWorkerMirroredStrategy needs every "
            f"process's address, not only the coordinator's ({cluster.coordinator}): "
            "--coordinator HOST0:PORT0,HOST1:PORT1,... (process order, the same on every "
            "process) or KERAS_DISTRIBUTION_JOB_ADDRESSES listing them all."
        )
    _meet(cluster, message)
    with deadline(cluster.timeout, message):
        STATE.tf_strategy = _multi_worker_strategy(cluster)
        # The first collective returns once every process has joined.
        _all_sum(1.0)


def _meet(cluster, message):
    """Returns once every other process of `cluster` answers at its address,
    within `cluster.timeout` seconds, else raises `ValueError(message)`.

    TensorFlow waits for the other processes inside C++ code that holds the
    interpreter, so no watchdog thread (`deadline`) can run meanwhile: the
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


def _all_sum(value):
    """`value` summed over the processes of the TensorFlow cluster (a collective)."""
    import tensorflow as tf

    strategy = STATE.tf_strategy
    total = strategy.reduce(
        "SUM", strategy.run(lambda: tf.constant(float(value), tf.float32)), axis=None
    )
    return float(total)


@contextlib.contextmanager
def data_parallel(devices):
    if STATE.tf_strategy is not None:
        if devices != 1:
            raise ValueError(
                f"devices={devices}: TensorFlow across processes trains on one device per "
                "process (start one process per device, e.g. with CUDA_VISIBLE_DEVICES)."
            )
        with STATE.tf_strategy.scope():
            yield
        return
    if devices == 1:
        yield
        return
    _split_cpu(devices)
    available = keras.distribution.list_devices()
    if devices > len(available):
        raise ValueError(
            f"Asked for devices={devices}, but this process sees {len(available)}: "
            f"{available}. (On CPU, TensorFlow splits a single CPU into N <= {_cores()} "
            "(cores) logical CPUs when nothing has initialised its devices before "
            "data_parallel(N).)"
        )
    with _mirrored_strategy(tuple(available[:devices])).scope():
        yield


def _mirrored_strategy(devices):
    """One MirroredStrategy per device set for the whole process.

    With a new strategy for each training, the synchronized batch norm of a
    second training in the same process failed: TensorFlow matched its
    all-reduces with the first model's ("Shape mismatch in the collective
    instance 100"), as both strategies number their collectives alike.
    """
    import tensorflow as tf

    if devices not in STATE.mirrored:
        # Keras lists "cpu:0"; TensorFlow wants "/cpu:0".
        STATE.mirrored[devices] = tf.distribute.MirroredStrategy([f"/{d}" for d in devices])
    return STATE.mirrored[devices]


def _cores():
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _split_cpu(devices):
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


def for_training(model):
    # Synchronized batch norm under several replicas: see the package's
    # `for_training`.
    import tensorflow as tf

    if tf.distribute.get_strategy().num_replicas_in_sync > 1:
        for layer in _keras_compat.flatten_layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    return model


@contextlib.contextmanager
def alone():
    # Across processes, a variable created in the body is created in a
    # thread of its own, outside the strategy's scope (which belongs to the
    # thread that entered it).
    if STATE.tf_strategy is None:
        yield
        return
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
    _all_sum(0.0)


def checks_epoch_ends_only(checkpoint_steps, checkpoint_seconds, start_step):
    """Raises unless the run checkpoints at epoch ends only, when TensorFlow
    trains across processes.

    There, a metric total is all-reduced over the processes whenever it is
    read, so a checkpoint inside an epoch (which holds the totals) would be a
    collective that only the chief joins, and restoring totals into every
    process would count them once per process.
    """
    if not STATE.tf_strategy or not (checkpoint_steps or checkpoint_seconds or start_step):
        return
    raise ValueError(
        "TensorFlow across processes checkpoints at epoch ends only: pass "
        "--checkpoint-every epoch (checkpoint_steps=None, checkpoint_seconds=None), "
        "and resume from an epoch-end state.npz"
        + (f" (this one stops at step {start_step} of an epoch)." if start_step else ".")
    )
