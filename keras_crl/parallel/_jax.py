"""The JAX engine: `keras.distribution.DataParallel`.

Over the devices of this process, or of every process of a cluster joined
with `join` (`jax.distributed`). One program runs over the sharded global
batch, so batch norm normalises with the global batch's statistics, exactly
as one device.
"""

import contextlib

import keras

from keras_crl.parallel.cluster import Process
from keras_crl.parallel.cluster import deadline

# One model, replicated: every process evaluates its share and holds the
# same weights and statistics.
SEPARATE_MODELS = False


def this_process():
    import jax

    if not jax.distributed.is_initialized():
        return Process(0, 1, True)
    index = jax.process_index()
    return Process(index, jax.process_count(), index == 0)


def join(cluster, message):
    import jax

    with deadline(cluster.timeout, message):
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator,
            num_processes=cluster.num_processes,
            process_id=cluster.process_id,
            # The deadline (above) fires first, with the address in its message.
            initialization_timeout=int(cluster.timeout) + 30,
        )


@contextlib.contextmanager
def data_parallel(devices):
    if this_process().count > 1:
        chosen = _cluster_devices(devices)
    elif devices == 1:
        yield
        return
    else:
        chosen = keras.distribution.list_devices()[:devices]
        if len(chosen) < devices:
            raise ValueError(
                f"Asked for devices={devices}, but this process sees {len(chosen)}: {chosen}. "
                "(On CPU, JAX can split the host with "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N set before it starts.)"
            )
    previous = keras.distribution.distribution()
    # Each process feeds its own slice of the global batch (`shard`), which
    # Keras' JAX trainer places with `jax.make_array_from_process_local_data`;
    # `auto_shard_dataset=False` says the data is sharded already.
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False)
    )
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def _cluster_devices(devices):
    """The first `devices` devices of every process of the cluster."""
    import jax

    chosen = []
    for process in range(jax.process_count()):
        own = [d for d in jax.devices() if d.process_index == process]
        if devices > len(own):
            raise ValueError(
                f"Asked for devices={devices} per process, but process {process} has "
                f"{len(own)}: {own}."
            )
        chosen += [f"{d.platform}:{d.id}" for d in own[:devices]]
    return chosen


def for_training(model):
    return model


@contextlib.contextmanager
def alone():
    # Outside the cluster-wide distribution, where creating a variable
    # (Keras' `save_weights` makes a throwaway optimizer) is a collective that
    # the other processes would never join. Reading the replicated weights
    # needs no other process.
    if this_process().count == 1:
        yield
        return
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def barrier():
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices("keras_crl.parallel.barrier")
