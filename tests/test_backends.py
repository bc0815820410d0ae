"""The backend list, and running a module under another backend."""

import keras
import pytest

from keras_crl import backends


def test_check_backends_names_the_unknown_ones():
    assert backends.check_backends("jax, torch") == ["jax", "torch"]
    assert backends.check_backends(["tensorflow"]) == ["tensorflow"]
    for bad in ("numpy", "", ["jax", "mxnet"]):
        with pytest.raises(ValueError, match="Valid backends: tensorflow, torch, jax"):
            backends.check_backends(bad)


def test_installed_backends_include_the_running_one():
    assert keras.backend.backend() in backends.installed_backends()


def test_backend_env_sets_the_backend_and_keeps_the_callers_choices(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    env = backends.backend_env("jax", {"XLA_FLAGS": "--x"})
    assert env["KERAS_BACKEND"] == "jax" and env["XLA_FLAGS"] == "--x"
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "1"


def test_a_failing_process_names_its_backend_and_says_why(tmp_path):
    other = "jax" if keras.backend.backend() != "jax" else "torch"
    missing = tmp_path / "missing.json"
    with pytest.raises(RuntimeError, match=f"(?s)keras_crl.train` on {other} failed.*missing.json"):
        backends.run(other, "keras_crl.train", [missing], timeout=300)
