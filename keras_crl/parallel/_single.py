"""The engine of the backends without data parallelism here (numpy, openvino):
one process on one device."""

import contextlib

import keras

from keras_crl.parallel.cluster import Process

SEPARATE_MODELS = False


def this_process():
    return Process(0, 1, True)


def join(cluster, message):
    raise ValueError(
        f"Several processes on {keras.backend.backend()}: not implemented (JAX, TF, torch only)."
    )


@contextlib.contextmanager
def data_parallel(devices):
    if devices != 1:
        raise ValueError(
            f"devices={devices} on {keras.backend.backend()}: not implemented (JAX, TF, "
            "torch only)."
        )
    yield


def for_training(model):
    return model


alone = contextlib.nullcontext


def barrier():
    pass  # one process
