"""A generated, seeded, learnable image classification set for tests."""

import numpy as np

from keras_crl.data.dataset import Dataset
from keras_crl.data.dataset import check_seed

# Distinct streams for prototypes, training pool and test set, so changing
# `num_samples` leaves the class prototypes (the "task") unchanged.
_PROTOTYPE_TAG = 1
_TRAIN_TAG = 2
_TEST_TAG = 3


def _as_size(image_size):
    if isinstance(image_size, (int, np.integer)):
        image_size = (image_size, image_size)
    height, width = (int(s) for s in image_size)
    if height < 1 or width < 1:
        raise ValueError(f"image_size must be positive, got {image_size}.")
    return height, width


def _prototypes(rng, num_classes, height, width, channels):
    # Each class is a sum of two coloured sine gratings with its own
    # frequencies and orientations. Prototypes are made left-right symmetric
    # so a horizontal flip (a standard augmentation) keeps the label right.
    v, u = np.meshgrid(np.arange(height) / height, np.arange(width) / width, indexing="ij")
    protos = np.zeros((num_classes, height, width, channels))
    for k in range(num_classes):
        for _ in range(2):
            angle = rng.uniform(0.0, np.pi)
            cycles = rng.uniform(1.0, 4.0)
            phase = rng.uniform(0.0, 2.0 * np.pi)
            wave = np.cos(2.0 * np.pi * cycles * (np.cos(angle) * u + np.sin(angle) * v) + phase)
            colour = rng.uniform(-1.0, 1.0, size=channels)
            protos[k] += wave[..., None] * colour
        protos[k] = 0.5 * (protos[k] + protos[k][:, ::-1])
        protos[k] /= max(np.abs(protos[k]).max(), 1e-6)
    return protos


def _samples(rng, protos, count, noise):
    num_classes = len(protos)
    labels = rng.permutation(np.arange(count) % num_classes).astype(np.int32)
    contrast = rng.uniform(0.6, 1.0, size=(count, 1, 1, 1))
    brightness = rng.uniform(-0.1, 0.1, size=(count, 1, 1, 1))
    images = 0.5 + brightness + 0.35 * contrast * protos[labels]
    images += noise * rng.standard_normal(images.shape)
    images = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    return images, labels


def load_synthetic(
    *,
    data_dir=None,
    validation_split=0.1,
    seed=0,
    num_classes=10,
    image_size=32,
    channels=3,
    num_samples=1000,
    test_samples=None,
    noise=0.2,
    dtype="uint8",
):
    """Generates a small image classification set: class patterns plus noise.

    Every class has a fixed pattern (two coloured sine gratings); an image is
    its class pattern at a random contrast and brightness plus Gaussian
    noise. A small CNN, or even a linear model, learns it within a few
    epochs, which makes it a quick end-to-end check that training works. The
    result depends only on the arguments: the same `seed` gives identical
    arrays.

    Args:
        data_dir: Unused.
        validation_split: Fraction of the `num_samples` training images held
            out for validation.
        seed: Non-negative integer seed of everything generated.
        num_classes: Number of classes.
        image_size: An integer or `(height, width)`.
        channels: Number of channels.
        num_samples: Number of training plus validation images.
        test_samples: Number of test images; defaults to `num_samples // 5`.
        noise: Standard deviation of the pixel noise, on the `[0, 1]` scale.
        dtype: `"uint8"` (values 0..255) or `"float32"` (values in [0, 1]).

    Returns:
        A `Dataset` named `"synthetic"`.

    Example:

    ```python
    ds = load_synthetic(num_classes=4, image_size=16, num_samples=200)
    ds.input_shape  # (16, 16, 3)
    ```
    """
    del data_dir
    seed = check_seed(seed)
    height, width = _as_size(image_size)
    num_classes = int(num_classes)
    channels = int(channels)
    num_samples = int(num_samples)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}.")
    if num_samples < num_classes:
        raise ValueError(
            f"num_samples ({num_samples}) must be at least num_classes ({num_classes})."
        )
    if test_samples is None:
        test_samples = max(num_samples // 5, num_classes)
    test_samples = int(test_samples)
    if test_samples < 1:
        raise ValueError(f"test_samples must be >= 1, got {test_samples}.")
    if dtype not in ("uint8", "float32"):
        raise ValueError(f"dtype must be 'uint8' or 'float32', got {dtype!r}.")

    protos = _prototypes(
        np.random.default_rng([seed, _PROTOTYPE_TAG]),
        num_classes,
        height,
        width,
        channels,
    )
    x, y = _samples(np.random.default_rng([seed, _TRAIN_TAG]), protos, num_samples, noise)
    x_test, y_test = _samples(np.random.default_rng([seed, _TEST_TAG]), protos, test_samples, noise)
    if dtype == "float32":
        x, x_test = (a.astype(np.float32) / np.float32(255.0) for a in (x, x_test))
    return Dataset.from_train_and_test(
        "synthetic",
        x,
        y,
        x_test,
        y_test,
        num_classes=num_classes,
        class_names=[f"class_{k}" for k in range(num_classes)],
        validation_split=validation_split,
        seed=seed,
    )
