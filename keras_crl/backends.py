"""The Keras backends keras-crl supports, and running code under each.

Keras fixes its backend when it is first imported, so work on several
backends runs one process per backend: `start` and `run` launch
`python -m MODULE ARGS` with `KERAS_BACKEND` set. This module does not
import Keras.
"""

import functools
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

BACKENDS = ("tensorflow", "torch", "jax")
# The exit status of a worker stopped by the user's mistake; its last line,
# `error: MESSAGE`, says which (`keras_crl.train.main`, the study's runner).
USER_ERROR_EXIT = 2


def check_backends(names):
    """Returns `names` as a list, or raises naming the unknown ones.

    Args:
        names: Backend names, or one comma-separated string.

    Example:

    >>> check_backends("jax,torch")
    ['jax', 'torch']
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise ValueError(
            f"Unknown backends {unknown or names!r}. Valid backends: {', '.join(BACKENDS)}."
        )
    return list(names)


def installed_backends():
    """The backends whose framework is installed here, in `BACKENDS` order."""
    return [b for b in BACKENDS if _installed(b)]


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def ensure_usable_backend():
    """Chooses an installed backend where Keras' default would fail to import.

    Keras falls back to TensorFlow when neither `KERAS_BACKEND` nor
    `keras.json` names a backend, and its import fails without TensorFlow.
    Only then, and only before Keras is imported, this sets `KERAS_BACKEND`
    to the first installed backend and warns that it did.

    Returns:
        The backend chosen, or `None` if nothing was changed.
    """
    if "keras" in sys.modules or os.environ.get("KERAS_BACKEND"):
        return None
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        if json.loads((home / "keras.json").read_text()).get("backend"):
            return None
    except (OSError, ValueError, AttributeError):
        pass
    installed = installed_backends()
    if "tensorflow" in installed or not installed:
        return None  # Keras' default works, or its own import error explains
    os.environ["KERAS_BACKEND"] = installed[0]
    warnings.warn(
        "No Keras backend is configured and TensorFlow, Keras' default, is not "
        f"installed: keras-crl uses KERAS_BACKEND={installed[0]}. Set KERAS_BACKEND "
        f"to choose one of the installed backends ({', '.join(installed)}).",
        stacklevel=2,
    )
    return installed[0]


def backend_env(backend, extra=None):
    """The environment of a process that runs Keras on `backend`.

    TensorFlow's C++ start-up lines are silenced unless the caller set
    `TF_CPP_MIN_LOG_LEVEL` itself.
    """
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(extra or {})
    return env


def thread_env(threads):
    """Environment variables pinning every framework to `threads` intra-op threads.

    For a process started after them: TensorFlow and XLA read them at start.
    """
    n = str(threads)
    xla = os.environ.get("XLA_FLAGS", "")
    if threads == 1:
        xla += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": n,
        "XLA_FLAGS": xla.strip(),
    }


def start(backend, module, args=(), extra_env=None, **popen_kwargs):
    """Starts `python -m module *args` on `backend`; returns the `Popen`."""
    command = [sys.executable, "-m", module, *map(str, args)]
    return subprocess.Popen(command, env=backend_env(backend, extra_env), **popen_kwargs)


def run(backend, module, args=(), extra_env=None, timeout=None, **popen_kwargs):
    """Runs `python -m module *args` on `backend` to the end.

    Raises:
        ValueError: The process stopped on a user's mistake
            (`USER_ERROR_EXIT`): its one-line message, naming the backend.
        RuntimeError: The process failed otherwise; the message names the
            backend and ends with what it printed last (when its output was
            captured).
    """
    popen_kwargs.setdefault("stdout", subprocess.PIPE)
    popen_kwargs.setdefault("stderr", subprocess.STDOUT)
    proc = start(backend, module, args, extra_env, text=True, **popen_kwargs)
    output, _ = proc.communicate(timeout=timeout)
    user_error = worker_error(proc.returncode, output)
    if user_error:
        raise ValueError(f"{backend}: {user_error}")
    if proc.returncode:
        tail = (output or "")[-3000:]
        raise RuntimeError(
            f"`python -m {module}` on {backend} failed (exit {proc.returncode})"
            + (f":\n{tail}" if tail else ".")
        )
    return output


def worker_error(returncode, output):
    """The message of a worker that stopped on a user's mistake, else `None`."""
    if returncode != USER_ERROR_EXIT:
        return None
    lines = [line for line in (output or "").splitlines() if line.startswith("error: ")]
    return lines[-1].removeprefix("error: ") if lines else None


@functools.cache
def takes_channels_first():
    """Whether this process's backend can convolve channels-first images.

    TensorFlow's own CPU kernels take channels-last only; channels-first
    needs a GPU or oneDNN (on by default only on CPUs with AVX-512 and
    newer, else `TF_ENABLE_ONEDNN_OPTS=1` before TensorFlow starts). Asked
    of a tiny convolution once. PyTorch and JAX take both.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return True
    import tensorflow as tf

    try:
        tf.nn.conv2d(tf.zeros((1, 1, 2, 2)), tf.zeros((1, 1, 1, 1)), 1, "VALID", "NCHW")
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return False
    return True
