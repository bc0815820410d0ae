"""Computes everything the consistency suite compares, on one backend.

Run by `test_consistency.py` as
`KERAS_BACKEND=<b> python -m tests.cross_backend.worker STAGE OUT_DIR`, once
per backend and stage; it writes `OUT_DIR/<stage>-<backend>.npz`, which the
parent test compares across backends.

Stage "train": loss values and gradients, initial weights, zoo forward
passes, pipeline digests, and short trainings (which also leave their final
weights as `.weights.h5`). Stage "train-1thread": the short trainings alone,
run by the parent with every framework pinned to one thread. Stage
"evaluate": every backend's trained weights as loaded on this backend, and
their accuracy.
"""

import hashlib
import sys
from pathlib import Path

import keras
import numpy as np

from keras_crl import competing_ratio_loss
from keras_crl import data as data_lib
from keras_crl import models as models_lib
from keras_crl import negative_log_likelihood_ratio_loss
from keras_crl.loss_factory import make_loss
from keras_crl.reproducible import make_deterministic
from keras_crl.reproducible import numpy_initialise
from tests.backend_utils import BACKEND
from tests.backend_utils import HAS_XLA
from tests.backend_utils import value_and_grad

# Confident, wrong, uniform, moderate and hopeless samples.
LOGITS = np.array(
    [
        [12.0, 1.0, 0.0, -1.0, 0.5],
        [0.5, 0.5, 3.0, 0.0, 1.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [2.0, -3.0, 1.0, 0.5, 0.1],
        [-9.0, 9.0, 0.0, 1.0, 2.0],
        [30.0, -30.0, 0.0, 0.0, 0.0],
    ],
    "float32",
)
LABELS = np.array([0, 1, 2, 3, 0, 0])
SOFT = np.random.default_rng(0).dirichlet(np.ones(5), size=len(LABELS)).astype("float32")

LOSS_CASES = {
    "crl": lambda y, z: competing_ratio_loss(y, z, from_logits=True),
    "crl_a1_b1": lambda y, z: competing_ratio_loss(y, z, alpha=1.0, beta=1.0, from_logits=True),
    "crl_beta075_smooth": lambda y, z: competing_ratio_loss(
        y, z, beta=0.75, label_smoothing=0.1, from_logits=True
    ),
    "nllr": lambda y, z: negative_log_likelihood_ratio_loss(y, z, from_logits=True),
    "ce": lambda y, z: competing_ratio_loss(y, z, beta=0.0, from_logits=True),
}
# Probabilities near 1 are ill-conditioned inputs (1 - p loses digits), so
# every backend gets the same float32 probabilities rather than its softmax.
PROBS = (lambda e: e / e.sum(-1, keepdims=True))(
    np.exp(LOGITS.astype("float64") - LOGITS.max(-1, keepdims=True))
).astype("float32")

TRAINING_STEPS = 20  # two epochs of ten batches


def loss_values(out):
    for name, fn in LOSS_CASES.items():
        for kind, targets in (("int", LABELS), ("soft", SOFT)):
            value, grad = value_and_grad(lambda z, fn=fn, t=targets: fn(t, z), LOGITS)
            out[f"loss/{name}/{kind}/value"] = value
            out[f"loss/{name}/{kind}/grad"] = grad
    value, grad = value_and_grad(lambda p: competing_ratio_loss(LABELS, p), PROBS)
    out["loss/crl_probs/int/value"] = value
    out["loss/crl_probs/int/grad"] = grad


def perturb(model, seed):
    """Seeded NumPy noise on every weight, BN statistics included.

    Freshly initialised BN layers are the identity at inference; noise makes
    the forward comparison exercise them.
    """
    for i, w in enumerate(model.weights):
        rng = np.random.default_rng([seed, i])
        value = keras.ops.convert_to_numpy(w)
        if "moving_variance" in w.path:
            value = value * rng.uniform(0.8, 1.25, value.shape)
        else:
            value = value + 0.05 * rng.normal(size=value.shape)
        w.assign(value.astype("float32"))


def weights_digest(model):
    """SHA-256 of every weight's bytes, in order: equal only if bit-identical."""
    digest = hashlib.sha256()
    for w in model.weights:
        value = keras.ops.convert_to_numpy(w)
        digest.update(f"{w.path}:{value.dtype}:{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def zoo_forward(out):
    images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    for name in models_lib.MODELS:
        model = models_lib.get_model(name, num_classes=10, input_shape=(32, 32, 3))
        numpy_initialise(model, 0)
        out[f"init/{name}"] = np.array(weights_digest(model))
        perturb(model, 0)
        out[f"zoo/{name}"] = keras.ops.convert_to_numpy(model(images, training=False))
        del model
        keras.backend.clear_session()


def training_pipeline(ds, x, y):
    """Digits in shuffled, augmented batches of 64, as training sees them."""
    return data_lib.BatchPipeline(
        x, y, 64, mean=ds.mean, std=ds.std, augment=True, pad=1, flip=False, shuffle=True, seed=0
    )


def pipeline_digests(out, ds):
    pipeline = training_pipeline(ds, ds.x_train, ds.y_train)
    digests = []
    for epoch in range(2):
        pipeline.epoch = epoch
        digests += [data_lib.batch_digest(*pipeline[i]) for i in range(len(pipeline))]
    out["data/digests"] = np.array(digests)


def short_training(out, ds, out_dir, jit, recipe):
    """20 SGD steps of the small CNN (batch norm) on digits with CRL."""
    from keras_crl.recipes import TorchSGD
    from keras_crl.recipes import get_recipe

    make_deterministic(0)
    pipeline = training_pipeline(ds, ds.x_train[:640], ds.y_train[:640])
    model = models_lib.get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    numpy_initialise(model, 0)
    tag = f"train/{recipe}/jit={jit}"
    for i, w in enumerate(model.weights):
        out[f"{tag}/init{i}"] = keras.ops.convert_to_numpy(w)
    # At a constant lr of 0.02 (momentum 0.9) this net's trajectory is
    # chaotic: one float32 rounding difference grows to 6e-4 in the loss by
    # step 20 (torch on one thread rounds one op differently from torch on
    # two). At 0.01, or at 0.02 dropping to 0.002 after ten steps (the paper
    # recipe scaled to two epochs), it stays within a few float32 ulps.
    if recipe == "paper":
        optimizer = get_recipe("paper", epochs=2, learning_rate=0.02).optimizer(len(pipeline))
    else:
        optimizer = TorchSGD(0.01, momentum=0.9)
    model.compile(optimizer=optimizer, loss=make_loss("crl"), jit_compile=jit)
    losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(float(logs["loss"]))
    )
    model.fit(
        pipeline,
        epochs=2,
        shuffle=False,
        verbose=0,
        callbacks=[data_lib.EpochSync(pipeline), record],
    )
    assert len(losses) == TRAINING_STEPS, len(losses)
    out[f"{tag}/losses"] = np.array(losses)
    for i, w in enumerate(model.weights):
        out[f"{tag}/w{i}"] = keras.ops.convert_to_numpy(w)
    if out_dir is not None:
        model.save_weights(Path(out_dir) / f"trained-{recipe}-jit={jit}-{BACKEND}.weights.h5")


def evaluate_weights(out, ds, out_dir):
    model = models_lib.get_model("small_cnn", num_classes=10, input_shape=(8, 8, 1))
    model.compile(
        loss=make_loss("crl"), metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")]
    )
    test = data_lib.BatchPipeline(ds.x_test, ds.y_test, 128, mean=ds.mean, std=ds.std)
    for path in sorted(Path(out_dir).glob("trained-*.weights.h5")):
        model.load_weights(path)
        for i, w in enumerate(model.weights):
            out[f"loaded/{path.name}/w{i}"] = keras.ops.convert_to_numpy(w)
        loss, accuracy = model.evaluate(test, verbose=0)
        out[f"eval/{path.name}"] = np.array([loss, accuracy])


def main(stage, out_dir):
    make_deterministic(0)  # TF32 off, deterministic kernels: for evaluation too
    ds = data_lib.load_dataset("digits", seed=0)
    out = {}
    if stage == "train-1thread":
        for recipe in ("sgd", "paper"):
            short_training(out, ds, None, jit=False, recipe=recipe)
    elif stage == "train":
        loss_values(out)
        pipeline_digests(out, ds)
        for recipe in ("sgd", "paper"):
            short_training(out, ds, out_dir, jit=False, recipe=recipe)
        if HAS_XLA:
            short_training(out, ds, out_dir, jit=True, recipe="sgd")
        zoo_forward(out)
    else:
        evaluate_weights(out, ds, out_dir)
    np.savez(Path(out_dir) / f"{stage}-{BACKEND}.npz", **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
