"""The Keras internals keras-crl relies on still behave as it assumes."""

import keras
import numpy as np

from keras_crl import _keras_compat


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
