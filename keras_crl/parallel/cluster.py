"""The processes that train together: who they are, joining them, time-outs.

`Cluster` describes them (from flags or Keras' `KERAS_DISTRIBUTION_*`
variables, `cluster_from_environment`); `join` makes this process one of
them through the running backend's engine; `this_process` says which one it
is. `STATE` holds what this process has set up, once per process.
"""

import contextlib
import dataclasses
import os
import sys
import threading
import types
import typing


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


class Process(typing.NamedTuple):
    """Which process this is among those training together."""

    index: int
    count: int
    chief: bool  # it writes the run folder


@dataclasses.dataclass
class State:
    """What this process has set up to train with others; one per process.

    Args:
        engine: The running backend's engine module (`_jax`, `_tensorflow`,
            `_torch`; `_single` for the others), which `keras_crl.parallel`
            picks once, when it is imported.
        joined: The `Cluster` this process joined (`join`), else `None`.
        tf_strategy: TensorFlow across processes: the cluster's
            `MultiWorkerMirroredStrategy`, else `None`.
        mirrored: TensorFlow in one process: its `MirroredStrategy` per
            device set (see `_tensorflow.data_parallel`).
    """

    engine: types.ModuleType | None = None
    joined: Cluster | None = None
    tf_strategy: object = None
    mirrored: dict = dataclasses.field(default_factory=dict)


STATE = State()


def this_process():
    """Which process this is: `Process(index, count, chief)`.

    `Process(0, 1, True)` in a single process. JAX: the cluster `join`
    joined; TensorFlow: the cluster it joined; torch: the process group's
    rank and size (one process per device), and torchrun's rank 0 is the
    chief also before the group is joined and after it is left. A data
    source that reads only its part of the data keys it by index and count;
    only the chief writes the run folder.

    Example:

    >>> this_process()
    Process(index=0, count=1, chief=True)
    """
    return STATE.engine.this_process()


def join(cluster):
    """Makes this process one of `cluster`'s (a no-op for one process).

    Call it once per process, before anything touches the backend's devices;
    it cannot be undone. JAX: `jax.distributed.initialize` with the
    coordinator, process count and index, as `keras.distribution.initialize`
    calls it (here directly, to bound the wait with `initialization_timeout`).
    TensorFlow: a `MultiWorkerMirroredStrategy` over `cluster.addresses`, one
    device per process, which `data_parallel` then enters; each process
    serves at its own address. Torch: torchrun has joined the machines
    (`keras_crl.cli.commands.torchrun_command`).

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
    if STATE.joined is not None:
        if STATE.joined != cluster:
            raise ValueError(f"This process already joined {STATE.joined}; cannot join {cluster}.")
        return
    message = (
        f"process {cluster.process_id} of {cluster.num_processes} could not join the "
        f"cluster at coordinator {cluster.coordinator} within {cluster.timeout:g} s: is "
        f"process 0 running there, reachable from here, and are all {cluster.num_processes} "
        "processes started with the same --num-processes?"
    )
    STATE.engine.join(cluster, message)
    # (keras.distribution.initialize then agrees on a global seed for Keras'
    # random streams; nothing here draws from them: make_deterministic seeds.)
    STATE.joined = cluster


@contextlib.contextmanager
def deadline(seconds, message):
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
