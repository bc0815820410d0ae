"""Seeded augmentation: the CIFAR padded crop and flip, the ImageNet crop boxes.

Everything runs in NumPy, driven by an explicit `np.random.Generator`, so a
given generator state yields the same images on every Keras backend. It is
deliberately not a Keras layer: random layers inside a model make some
backends give up on compilation, and their random streams differ between
backends.

`random_crop_flip` augments whole in-memory batches (`BatchPipeline`);
`random_resized_crop_box` and `center_crop_box` are the boxes `FolderStream`
cuts out of each decoded image, for training and for evaluation.
"""

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

_DATA_FORMATS = ("channels_last", "channels_first")

# torchvision's RandomResizedCrop defaults: area fraction and aspect ratio.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
# Evaluation: resize the shorter side to size / 0.875 (256 for 224), then
# cut the central size x size square.
CENTER_FRACTION = 0.875


def random_crop_flip(x, rng, *, pad=4, flip=True, data_format="channels_last"):
    """Random crop after zero padding, then random horizontal flip.

    Each image is padded with `pad` zero pixels on every side and a window of
    the original size is cut out at a uniformly drawn offset in
    `[0, 2 * pad]` along each axis (so the content moves by up to `pad`
    pixels); with `flip`, each image is then mirrored left-right with
    probability 1/2. Zero is the raw pixel value, i.e. black, as in the usual
    recipe where padding comes before normalisation.

    Random numbers are drawn in a fixed order: `rng.integers(0, 2 * pad + 1,
    size=(N, 2))` for the (row, column) offsets, then `rng.random(N)` for
    the flips (only when `flip` is true). The same generator state therefore
    always gives the same batch.

    Args:
        x: Batch of images, 4-D, any dtype. Not modified.
        rng: A `np.random.Generator`.
        pad: Padding in pixels on each side; `0` disables the crop.
        flip: Whether to apply random horizontal flips.
        data_format: `"channels_last"` (NHWC) or `"channels_first"` (NCHW).

    Returns:
        A new array with the shape and dtype of `x`.

    Example:

    ```python
    rng = np.random.default_rng(0)
    out = random_crop_flip(np.zeros((8, 32, 32, 3), np.uint8), rng, pad=4)
    out.shape  # (8, 32, 32, 3)
    ```
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"Expected a 4-D batch of images, got {x.shape}.")
    if data_format not in _DATA_FORMATS:
        raise ValueError(f"data_format must be one of {_DATA_FORMATS}, got {data_format!r}.")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator, got {type(rng).__name__}.")
    pad = int(pad)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}.")
    if data_format == "channels_first":
        out = random_crop_flip(x.transpose(0, 2, 3, 1), rng, pad=pad, flip=flip)
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    n, height, width, channels = x.shape
    offsets = rng.integers(0, 2 * pad + 1, size=(n, 2))
    flips = rng.random(n) < 0.5 if flip else None

    if pad > 0:
        padded = np.zeros((n, height + 2 * pad, width + 2 * pad, channels), dtype=x.dtype)
        padded[:, pad : pad + height, pad : pad + width] = x
        # A strided view of every possible crop; fancy-indexing it copies one
        # contiguous window per image, several times faster than gathering
        # pixel by pixel.
        windows = sliding_window_view(padded, (height, width, channels), axis=(1, 2, 3))[:, :, :, 0]
        out = windows[np.arange(n), offsets[:, 0], offsets[:, 1]]
    else:
        out = x.copy()
    if flips is not None and flips.any():
        out[flips] = out[flips][:, :, ::-1]
    return out


def random_crop(x, rng, *, pad=4, data_format="channels_last"):
    """Random crop after zero padding, without flipping.

    Args:
        x: Batch of images, 4-D.
        rng: A `np.random.Generator`.
        pad: Padding in pixels on each side.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        A new array with the shape and dtype of `x`.

    Example:

    ```python
    out = random_crop(x, np.random.default_rng(0), pad=4)
    ```
    """
    return random_crop_flip(x, rng, pad=pad, flip=False, data_format=data_format)


def random_flip(x, rng, *, data_format="channels_last"):
    """Mirrors each image left-right with probability 1/2.

    Args:
        x: Batch of images, 4-D.
        rng: A `np.random.Generator`.
        data_format: `"channels_last"` or `"channels_first"`.

    Returns:
        A new array with the shape and dtype of `x`.

    Example:

    ```python
    out = random_flip(x, np.random.default_rng(0))
    ```
    """
    return random_crop_flip(x, rng, pad=0, flip=True, data_format=data_format)


def random_resized_crop_box(width, height, rng, scale=CROP_SCALE, ratio=CROP_RATIO):
    """The box of a random resized crop, as torchvision draws it.

    Up to ten tries draw an area fraction uniformly from `scale` and an
    aspect ratio log-uniformly from `ratio`; the first box that fits is
    placed uniformly at random. If none fits, the box is the whole image cut
    centrally to the nearest allowed aspect ratio.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        rng: A `np.random.Generator`.
        scale: Range of the box's area as a fraction of the image's.
        ratio: Range of the box's width / height.

    Returns:
        `(left, top, right, bottom)` in pixels.

    Example:

    >>> random_resized_crop_box(100, 80, np.random.default_rng(0))
    (1, 0, 69, 78)
    """
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    if width / height < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif width / height > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def center_crop_box(width, height, size, fraction=CENTER_FRACTION):
    """The box that shorter-side resize to `size / fraction` + center crop cuts.

    Args:
        width: Image width in pixels.
        height: Image height in pixels.
        size: Side of the square crop after resizing.
        fraction: Crop side / resized shorter side.

    Returns:
        `(left, top, right, bottom)` in the image's own pixels (floats), so
        the crop and the resize are one resampling.

    Example:

    >>> center_crop_box(512, 256, 224)
    (144.0, 16.0, 368.0, 240.0)
    """
    resized_short = int(size / fraction)
    side = min(width, height) * size / resized_short
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side
