"""Quick start: CRL on real images (scikit-learn's bundled digits), on any backend.

KERAS_BACKEND=jax python examples/quickstart.py
"""

import keras
from sklearn.datasets import load_digits

from keras_crl import CompetingRatioLoss

digits = load_digits()
x, y = digits.images[..., None] / 16.0, digits.target  # 8x8 images, integer labels
model = keras.Sequential(
    [
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),  # logits
    ]
)
model.compile(optimizer="adam", loss=CompetingRatioLoss(from_logits=True), metrics=["accuracy"])
model.fit(x[:1500], y[:1500], epochs=5, batch_size=32, verbose=2)
print("test accuracy:", model.evaluate(x[1500:], y[1500:], verbose=0)[1])
