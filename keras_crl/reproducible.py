"""The same start on every backend: seeded NumPy initialization, determinism.

Keras' random streams differ between TensorFlow, PyTorch and JAX, so the same
`seed` gives three different initial networks. `numpy_initialize` redraws
every weight from a NumPy generator with the distribution of the layer's own
Keras initializer, so a model starts bit-identical on all backends.
"""

import math
import os
import warnings

import keras
import numpy as np

from keras_crl import _keras_compat


def numpy_initialize(model, seed):
    """Re-initializes `model`'s weights from NumPy, identically on any backend.

    Each variable is drawn with its layer's initializer (`Zeros`, `Ones`,
    `Constant`, `VarianceScaling` and its Glorot/He/LeCun forms,
    `RandomNormal`, `RandomUniform`, `TruncatedNormal`) from
    `np.random.default_rng([seed, i])`, `i` its position in `model.weights`.

    Args:
        model: A built Keras model.
        seed: Integer seed.

    Returns:
        The model.

    Raises:
        ValueError: A variable has an initializer this function cannot
            reproduce; initialize on one backend and share a `.weights.h5`
            file instead.

    Example:

    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> a = keras.ops.convert_to_numpy(numpy_initialize(model, 0).weights[0])
    >>> b = keras.ops.convert_to_numpy(numpy_initialize(model, 0).weights[0])
    >>> bool((a == b).all())
    True
    """
    owners = _variable_initializers(model)
    for index, variable in enumerate(model.weights):
        initializer = owners.get(id(variable))
        if initializer is None:
            raise ValueError(
                f"Cannot tell how variable {variable.path!r} is initialized; "
                "share a .weights.h5 file between backends instead."
            )
        rng = np.random.default_rng([seed, index])
        value = _draw(initializer, tuple(variable.shape), rng, variable.path)
        variable.assign(value.astype(keras.backend.standardize_dtype(variable.dtype)))
    return model


def numpy_initialise(model, seed):
    """Deprecated: `numpy_initialize`, under its old spelling; goes in the next release.

    Args:
        model: A built Keras model.
        seed: Integer seed.

    Returns:
        The model.

    Example:

    ```python
    numpy_initialize(model, seed)  # instead
    ```
    """
    warnings.warn(
        "numpy_initialise is deprecated; use numpy_initialize (Keras spelling).",
        DeprecationWarning,
        stacklevel=2,
    )
    return numpy_initialize(model, seed)


def _variable_initializers(model):
    """Maps `id(variable)` to the initializer of the layer that owns it."""
    found = {}
    for layer in _keras_compat.flatten_layers(model):
        for variable in _keras_compat.own_variables(layer):
            name = variable.name
            candidates = [f"{name}_initializer"]
            if name.endswith("_kernel"):  # depthwise_kernel -> depthwise_initializer
                candidates.append(f"{name[: -len('_kernel')]}_initializer")
            if name == "kernel":  # DepthwiseConv2D names its kernel plainly
                candidates.append("depthwise_initializer")
            for attribute in candidates:
                initializer = getattr(layer, attribute, None)
                if initializer is not None:
                    found[id(variable)] = keras.initializers.get(initializer)
                    break
    return found


def _fans(shape):
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def _draw(initializer, shape, rng, path):
    init = keras.initializers
    if isinstance(initializer, init.Zeros):
        return np.zeros(shape)
    if isinstance(initializer, init.Ones):
        return np.ones(shape)
    if isinstance(initializer, init.Constant):
        return np.full(shape, float(initializer.get_config()["value"]))
    if isinstance(initializer, init.VarianceScaling):
        # Glorot/He/LeCun subclasses leave these out of get_config().
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        scale = initializer.scale / max(1.0, fan[initializer.mode])
        distribution = initializer.distribution
        if distribution == "uniform":
            limit = math.sqrt(3.0 * scale)
            return rng.uniform(-limit, limit, shape)
        if distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(scale), shape)
        # Truncated at two standard deviations, rescaled to keep the variance.
        return _truncated_normal(rng, math.sqrt(scale) / 0.87962566103423978, shape)
    if isinstance(initializer, init.TruncatedNormal):
        config = initializer.get_config()
        return config["mean"] + _truncated_normal(rng, config["stddev"], shape)
    if isinstance(initializer, init.RandomNormal):
        config = initializer.get_config()
        return rng.normal(config["mean"], config["stddev"], shape)
    if isinstance(initializer, init.RandomUniform):
        config = initializer.get_config()
        return rng.uniform(config["minval"], config["maxval"], shape)
    raise ValueError(
        f"Cannot reproduce initializer {type(initializer).__name__} of {path!r} in "
        "NumPy; share a .weights.h5 file between backends instead."
    )


def _truncated_normal(rng, stddev, shape):
    values = rng.normal(0.0, 1.0, shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.normal(0.0, 1.0, int(outside.sum()))
        outside = np.abs(values) > 2.0
    return values * stddev


def make_deterministic(seed, ops=True):
    """Seeds every generator, sets deterministic kernels on or off, turns TF32 off.

    Deterministic kernels: `set_op_determinism(ops)`.

    TensorFloat-32 (float32 inputs rounded to a 10-bit mantissa) is turned
    off on every backend: recent NVIDIA GPUs use it by default for float32
    convolutions (all three) and matrix multiplications (TensorFlow, JAX),
    each framework in its own way. TensorFlow:
    `enable_tensor_float_32_execution(False)`. PyTorch:
    `torch.backends.cuda.matmul.allow_tf32 = False` and
    `torch.backends.cudnn.allow_tf32 = False`. JAX:
    `jax_default_matmul_precision = "highest"`. These switches are
    process-wide and stay as set.

    Args:
        seed: Integer seed for Python, NumPy and the backend.
        ops: Deterministic kernels on (default) or off.
    """
    _keras_compat.set_random_seed(seed)
    set_op_determinism(ops)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        # The legacy switches: torch maps them onto its newer `fp32_precision`
        # settings, and, unlike those, they leave every TF32 getter readable
        # (after `torch.backends.cudnn.conv.fp32_precision = "ieee"` alone,
        # reading `torch.backends.cudnn.allow_tf32` raises; torch 2.13).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")


def set_op_determinism(on):
    """Deterministic kernels on or off, process-wide.

    TensorFlow: op determinism (`enable_op_determinism`). PyTorch:
    deterministic algorithms (and, on GPU, deterministic cuBLAS workspaces).
    JAX on CPU is deterministic; on GPU set
    `XLA_FLAGS=--xla_gpu_deterministic_ops=true` before starting Python.
    Turning them off again lets a process that ran a deterministic run run
    one with XLA on TensorFlow: Keras compiles no XLA while op determinism
    is on.

    Args:
        on: `True` or `False`.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        # TensorFlow's public API only turns it on; its own tests (and
        # Keras') switch it through this module.
        from tensorflow.python.framework import config as tf_config

        if on:
            tf_config.enable_op_determinism()
        else:
            tf_config.disable_op_determinism()
    elif backend == "torch":
        import torch

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(bool(on), warn_only=True)


def op_determinism():
    """Whether the backend's deterministic kernels are on now.

    TensorFlow: op determinism; PyTorch: deterministic algorithms; JAX:
    `--xla_gpu_deterministic_ops=true` in `XLA_FLAGS`, or no GPU (XLA on a
    CPU is deterministic).

    Example (on a CPU):

    >>> make_deterministic(0)
    >>> op_determinism()
    True
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from tensorflow.python.framework import config as tf_config

        return bool(tf_config.is_op_determinism_enabled())
    if backend == "torch":
        import torch

        return torch.are_deterministic_algorithms_enabled()
    if backend == "jax":
        import jax

        gpu = any(d.platform == "gpu" for d in jax.devices())
        return not gpu or "--xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", "")
    return True
