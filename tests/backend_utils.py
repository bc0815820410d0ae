"""Backend-specific glue the tests need: gradients, XLA compilation, batch digests.

Keras has no backend-neutral `grad`, so the tests get one here, in one place.
"""

import contextlib
import hashlib

import keras
import numpy as np

from keras_crl.reproducible import op_determinism
from keras_crl.reproducible import set_op_determinism

BACKEND = keras.backend.backend()
HAS_XLA = BACKEND in ("tensorflow", "jax")


def value_and_grad(fn, x):
    """Returns `fn(x)` and the gradient of `sum(fn(x))` w.r.t. `x`, as NumPy."""
    x = np.asarray(x)
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def total(x):
            value = fn(x)
            return jnp.sum(value.astype("float32")), value

        (_, value), grad = jax.value_and_grad(total, has_aux=True)(jnp.asarray(x))
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
            total = tf.reduce_sum(tf.cast(value, "float32"))
        grad = tape.gradient(total, x)
    elif BACKEND == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        value = fn(x)
        value.float().sum().backward()
        grad = x.grad
        value = value.detach()
    else:
        raise NotImplementedError(BACKEND)
    return _numpy(value), _numpy(grad)


def xla(fn):
    """`fn` compiled with XLA (TensorFlow and JAX only)."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn, jit_compile=True)


@contextlib.contextmanager
def op_determinism_off():
    """Deterministic kernels off inside, as they were after: Keras compiles
    no XLA on TensorFlow under op determinism (only a warning says so), and
    an earlier test or `make_deterministic` may have turned it on."""
    was = op_determinism()
    set_op_determinism(False)
    try:
        yield
    finally:
        set_op_determinism(was)


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


def batch_digest(x_batch, y_batch):
    """SHA-256 of a batch, to compare batches across backends and runs.

    The digest covers dtype, shape and bytes of both arrays, so equal digests
    mean bit-identical batches.

    Args:
        x_batch: Images, a NumPy array or a CPU tensor of any backend.
        y_batch: Labels, likewise.

    Returns:
        The hex digest, a string of 64 characters.
    """
    digest = hashlib.sha256()
    for array in (x_batch, y_batch):
        # torch tensors that require grad refuse np.asarray; detach them first.
        if hasattr(array, "detach") and hasattr(array, "cpu"):
            array = array.detach().cpu()
        array = np.ascontiguousarray(np.asarray(array))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
