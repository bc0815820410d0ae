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
