import os
import tempfile

# Quieter logs; each backend runs in its own pytest process (see Makefile).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# JAX compiles every initializer and train step per shape; a persistent cache
# lets the cross-backend workers reuse what this suite's JAX run compiled.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "keras_crl_jax_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


# Tests that do not depend on the backend (argument parsing, loaders, statistics)
# run once per suite: under this backend's pytest process, skipped under the others.
SUITE_BACKEND = "jax"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "once_per_suite: backend-independent; runs only under KERAS_BACKEND=jax"
    )


def pytest_collection_modifyitems(config, items):
    import pytest

    backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        import keras

        backend = keras.backend.backend()
    skip = pytest.mark.skip(reason=f"backend-independent: runs under {SUITE_BACKEND} only")
    for item in items:
        if "once_per_suite" in item.keywords and backend != SUITE_BACKEND:
            item.add_marker(skip)
