"""Train a keras-hub ResNet backbone with CRL through plain `model.compile`.

keras-hub is keras-cv's maintained successor and an optional extra
(`pip install keras-crl[keras-hub]`; on Linux it installs and imports
TensorFlow). Its presets download weights, so the backbone is built from
explicit settings; the zoo names the standard depths `keras_hub_resnet18` ..
`keras_hub_resnet152` (`keras-crl train --model keras_hub_resnet18`).

    KERAS_BACKEND=jax python examples/keras_hub_backbone.py --epochs 10
"""

import argparse

import keras
from sklearn.datasets import load_digits

from keras_crl import CompetingRatioLoss
from keras_crl.models import keras_hub_backbone_model

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--samples", type=int, default=1500, help="training images (of 1797)")
args = parser.parse_args()

keras.utils.set_random_seed(0)  # the same initial weights at every run
digits = load_digits()
x, y = digits.images[..., None] / 16.0, digits.target  # 8x8 images, integer labels
x_train, y_train = x[: args.samples], y[: args.samples]
x_test, y_test = x[1500:], y[1500:]

# A small ResNet: two stacks of one basic block each (keras-hub's first stack
# has 64 filters). The 7x7/2 stem and max-pool take 8x8 digits to 2x2.
model = keras_hub_backbone_model(
    num_classes=10,
    input_shape=(8, 8, 1),
    stackwise_num_filters=(64, 128),
    stackwise_num_blocks=(1, 1),
    stackwise_num_strides=(1, 2),
)
model.compile(
    optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
    loss=CompetingRatioLoss(beta=0.25, from_logits=True),
    metrics=["accuracy"],
)
print(f"training {model.name} ({model.count_params():,} weights) with {model.loss.name}")
model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, verbose=2)
print("test accuracy:", model.evaluate(x_test, y_test, verbose=0)[1])
