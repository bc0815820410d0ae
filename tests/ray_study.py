"""A tiny study for tests/test_ray_executor.py, run in a process of its own.

    python -m tests.ray_study OUT_DIR sequential|ray

Two losses (CE, CRL) x one seed of small_cnn on 640 digits, 2 epochs, one
thread per run; under Ray also a loss that raises once training starts.
"""

import sys

import keras

from keras_crl.study import ray_executor
from keras_crl.study import runner
from keras_crl.study.settings import StudySettings
from keras_crl.study.settings import resolve_settings
from keras_crl.study.variants import parse_variant
from keras_crl.study.variants import variant

TRAINING = {
    "dataset": "digits",
    "model": "small_cnn",
    "epochs": 2,
    "batch_size": 32,
    "limit": 640,
    "augment": False,
}
RAISES = "tests.ray_study:RaisesInTraining"


class RaisesInTraining(keras.losses.Loss):
    """Passes the study's check on a batch of 2, raises on a training batch."""

    def __init__(self, from_logits=True, **kwargs):
        super().__init__(**kwargs)

    def call(self, y_true, y_pred):
        if y_pred.shape[0] is not None and y_pred.shape[0] > 2:
            raise ValueError("RaisesInTraining: this loss refuses to train")
        return keras.ops.mean(y_pred, axis=-1)


def settings(executor):
    base = resolve_settings(TRAINING, seeds=1, backends=keras.backend.backend())
    variants = [variant("ce"), variant("crl", 0, 0.25)]
    if executor == "ray":
        variants.append(parse_variant(RAISES))
    return StudySettings(
        training=base.training,
        seeds=[0],
        backends=base.backends,
        variants=variants,
        threads=1,
    )


def main(out_dir, executor):
    s = settings(executor)
    if executor == "ray":
        ray_executor.run(s, out_dir, num_cpus=2, checkpoint_steps=1)
    else:
        runner.run(s, out_dir, keras.backend.backend())


if __name__ == "__main__":
    main(*sys.argv[1:])
