"""Nothing in the package unpickles untrusted data or loads models unsafely."""

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_crl"


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def test_no_unsafe_loading_in_the_package():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for call in calls(tree):
            name = ast.unparse(call.func)
            assert (
                name not in ("pickle.load", "pickle.loads", "torch.load", "np.load")
                or name == "np.load"
                and any(
                    k.arg == "allow_pickle" and ast.unparse(k.value) == "False"
                    for k in call.keywords
                )
            ), f"{path.name}: {ast.unparse(call)}"
            for keyword in call.keywords:
                assert not (keyword.arg == "safe_mode" and ast.unparse(keyword.value) != "True"), (
                    f"{path.name}: {ast.unparse(call)}"
                )


def test_cifar_unpickler_refuses_anything_but_arrays(tmp_path):
    from keras_crl.data import cifar

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(Exception, match="(?i)refus|not allowed|forbidden|unpickl"):
        with open(path, "rb") as f:
            cifar._ArrayOnlyUnpickler(f, encoding="bytes").load()
    ok = tmp_path / "ok"
    ok.write_bytes(pickle.dumps({b"data": np.zeros((2, 3), np.uint8), b"labels": [1, 2]}))
    with open(ok, "rb") as f:
        assert cifar._ArrayOnlyUnpickler(f, encoding="bytes").load()[b"labels"] == [1, 2]
