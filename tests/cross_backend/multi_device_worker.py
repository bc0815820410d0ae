"""One process: a loss value and one SGD step, on one device and on two.

    KERAS_BACKEND=jax|tensorflow python -m tests.cross_backend.multi_device_worker OUT.npz

Two CPU devices are made before the backend starts (JAX: a forced host device
count; TensorFlow: two logical CPUs).
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import keras  # noqa: E402
import numpy as np  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )

from keras_crl import CompetingRatioLoss  # noqa: E402
from keras_crl.recipes import TorchSGD  # noqa: E402
from keras_crl.reproducible import numpy_initialise  # noqa: E402
from keras_crl.parallel import data_parallel  # noqa: E402


def step(devices, x, y):
    with data_parallel(devices):
        # No batch norm: per-replica batch statistics would differ from the
        # global batch's by design; the point here is the loss reduction.
        model = keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(), keras.layers.Dense(10),
        ])
        numpy_initialise(model, 0)
        model.compile(optimizer=TorchSGD(0.5, momentum=0.9, l2=5e-4),
                      loss=CompetingRatioLoss(from_logits=True))
        loss_before = model.evaluate(x, y, batch_size=len(x), verbose=0)
        model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
        weights = [keras.ops.convert_to_numpy(w) for w in model.weights]
        return loss_before, weights, replicas()


def replicas():
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy().num_replicas_in_sync
    distribution = keras.distribution.distribution()
    return 1 if distribution is None else distribution.device_mesh.devices.size


def main(out):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 32).astype("int32")
    single_loss, single, single_replicas = step(1, x, y)
    multi_loss, multi, multi_replicas = step(2, x, y)
    arrays = {"single_loss": single_loss, "multi_loss": multi_loss,
              "replicas": [single_replicas, multi_replicas]}
    for i, (a, b) in enumerate(zip(single, multi)):
        arrays[f"single{i}"], arrays[f"multi{i}"] = a, b
    np.savez(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
