"""The Keras internals keras-crl relies on still behave as it assumes."""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_crl import _keras_compat

ROOT = Path(__file__).resolve().parents[1]


def test_mask_travels_on_the_tensor():
    x = keras.ops.convert_to_tensor(np.ones(3, "float32"))
    mask = keras.ops.convert_to_tensor(np.array([True, False, True]))
    _keras_compat.set_keras_mask(x, mask)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(_keras_compat.get_keras_mask(x)), [True, False, True]
    )


def test_reduce_weighted_values_is_keras_mean_with_mask_and_weights():
    values = keras.ops.convert_to_tensor(np.array([1.0, 2.0, 3.0, 4.0], "float32"))
    mask = keras.ops.convert_to_tensor(np.array([True, True, False, True]))
    reduced = _keras_compat.reduce_weighted_values(
        values,
        sample_weight=np.array([1.0, 1.0, 1.0, 0.5], "float32"),
        mask=mask,
        reduction="sum_over_batch_size",
    )
    # Masked-out entries count neither in the sum nor in the batch size.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reduced), (1 + 2 + 2) / 3, rtol=1e-6)


def test_flatten_layers_reaches_into_nested_models():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="inner_dense")])
    outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(2, name="head")])
    names = [layer.name for layer in _keras_compat.flatten_layers(outer)]
    assert "inner_dense" in names and "head" in names and outer.name not in names
    assert [v.name for v in _keras_compat.own_variables(outer.layers[-1])] == ["kernel", "bias"]
    assert _keras_compat.own_variables(inner) == []


def test_softmax_output_is_marked():
    probs = keras.activations.softmax(keras.ops.convert_to_tensor(np.zeros((1, 3), "float32")))
    assert _keras_compat.is_softmax_output(probs)
    assert not _keras_compat.is_softmax_output(keras.ops.convert_to_tensor(np.zeros(3)))


def test_set_random_seed_matches_keras_own():
    draws = []
    for seed_with in (keras.utils.set_random_seed, _keras_compat.set_random_seed):
        seed_with(3)
        draws.append(
            (keras.ops.convert_to_numpy(keras.random.uniform((4,))), np.random.uniform(size=2))
        )
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    np.testing.assert_array_equal(draws[0][1], draws[1][1])


def test_set_random_seed_leaves_tensorflow_alone_on_other_backends():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        pytest.skip("on TensorFlow, Keras' own seeding is used (and TensorFlow is loaded)")
    code = (
        "import sys; from keras_crl import _keras_compat; "
        "_keras_compat.set_random_seed(0); print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, KERAS_BACKEND=backend),
        timeout=300,
    )
    assert result.stdout.strip() == "False", result.stderr[-2000:]


def test_build_metrics_creates_the_compiled_metrics_variables_before_fit():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    model.compile(
        optimizer="sgd",
        loss="sparse_categorical_crossentropy",
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    batch = (np.ones((4, 2), "float32"), np.zeros(4, "int32"))
    _keras_compat.build_metrics(model, batch)
    # Loss mean (total, count) and accuracy (total, count).
    assert len(model.metrics_variables) == 4
    before = [v.path for v in model.metrics_variables]
    model.fit(*batch, epochs=1, verbose=0)  # fit uses them, makes no others
    assert [v.path for v in model.metrics_variables] == before
    assert float(keras.ops.convert_to_numpy(model.metrics_variables[-1])) == 4
