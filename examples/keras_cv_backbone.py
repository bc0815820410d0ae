"""Train a keras-cv backbone with CRL, using the lower-level pieces directly.

keras-cv is optional (`pip install keras-crl[keras-cv]`); it always imports
TensorFlow, whatever the Keras backend, and its named presets need network
access, so the backbone is built from explicit settings. Its ResNet stem is
ImageNet-style (7x7 stride 2 + max-pool): prefer images of 64 px or more.

    KERAS_BACKEND=jax python examples/keras_cv_backbone.py --epochs 10
"""

import argparse

import keras

from keras_crl import CompetingRatioLoss
from keras_crl.data import EpochSync
from keras_crl.data import load_dataset
from keras_crl.models import keras_cv_backbone_model
from keras_crl.recipes import get_recipe

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--samples", type=int, default=2000)
args = parser.parse_args()

ds = load_dataset("synthetic", num_classes=10, image_size=64, num_samples=args.samples)
recipe = get_recipe("cosine", epochs=args.epochs, batch_size=64, learning_rate=0.05)
train = ds.pipeline("train", recipe.batch_size, augment=True, shuffle=True, seed=0)
val = ds.pipeline("val", recipe.batch_size)
test = ds.pipeline("test", recipe.batch_size)

# A ResNet-10-style backbone: basic blocks, one per stage. (keras-cv's stem
# has 64 filters and its first basic block no projection: keep 64 first.)
model = keras_cv_backbone_model(
    num_classes=ds.num_classes,
    input_shape=ds.input_shape,
    stackwise_num_filters=(64, 128, 256, 512),
    stackwise_num_blocks=(1, 1, 1, 1),
)
model.compile(
    optimizer=recipe.optimizer(len(train)),
    loss=CompetingRatioLoss(beta=0.25, from_logits=True),
    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
)
model.fit(
    train,
    validation_data=val,
    epochs=recipe.epochs,
    shuffle=False,
    callbacks=[EpochSync(train)],
    verbose=2,
)
print("test accuracy:", model.evaluate(test, verbose=0)[1])
