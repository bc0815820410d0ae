"""`make_deterministic` turns TF32 off on each backend (run once per backend);
`numpy_initialise`, the old spelling, still works and warns.

The settings are process-wide and readable on a CPU too. Each test first
turns TF32 on, as recent NVIDIA GPUs have it by default, so that it fails
when `make_deterministic` leaves the setting alone.
"""

import keras
import numpy as np
import pytest

from keras_crl.reproducible import make_deterministic
from keras_crl.reproducible import numpy_initialise
from keras_crl.reproducible import numpy_initialize
from tests.backend_utils import BACKEND


def only_on(backend):
    return pytest.mark.skipif(BACKEND != backend, reason=f"a {backend} setting")


@only_on("tensorflow")
def test_tf32_off_tensorflow():
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(True)
    make_deterministic(0)
    assert not tf.config.experimental.tensor_float_32_execution_enabled()


@only_on("torch")
@pytest.mark.parametrize("api", ["legacy", "fp32_precision"])
def test_tf32_off_torch(api):
    import torch

    # TF32 on, the way users turn it on: the legacy flags, or torch >= 2.9's
    # per-operation precision.
    if api == "legacy":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif hasattr(torch.backends, "fp32_precision"):
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
    else:
        pytest.skip("torch < 2.9 has no fp32_precision")
    make_deterministic(0)
    assert torch.backends.cuda.matmul.allow_tf32 is False
    assert torch.backends.cudnn.allow_tf32 is False
    assert torch.get_float32_matmul_precision() == "highest"
    if hasattr(torch.backends, "fp32_precision"):
        assert torch.backends.cuda.matmul.fp32_precision == "ieee"
        assert torch.backends.cudnn.conv.fp32_precision != "tf32"


@only_on("jax")
def test_tf32_off_jax():
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", None)
    make_deterministic(0)
    assert jax.config.jax_default_matmul_precision == "highest"
    # And compiled code asks for it: the dot's precision in the lowered program.
    x = jnp.ones((2, 2), "float32")
    program = jax.jit(lambda a: a @ a).lower(x).as_text()
    assert "HIGHEST" in program.upper(), program


@pytest.mark.once_per_suite
def test_numpy_initialise_is_a_deprecated_alias():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    expected = [np.array(w) for w in numpy_initialize(model, 7).get_weights()]
    model.set_weights([w + 1 for w in expected])
    with pytest.warns(DeprecationWarning, match="use numpy_initialize"):
        assert numpy_initialise(model, 7) is model
    for got, want in zip(model.get_weights(), expected):
        np.testing.assert_array_equal(got, want)
