"""A reproducible, backend-neutral batch pipeline on top of `PyDataset`."""

import math
import threading

import keras
import numpy as np

from keras_crl.data.augment import random_crop_flip
from keras_crl.data.dataset import check_labels

# Domain tags keep the shuffle stream and the per-batch streams apart.
# SeedSequence pads short entropy with zeros, so default_rng([s, e]) and
# default_rng([s, e, 0]) are the *same* stream; without a tag the shuffle of
# an epoch would share its random numbers with the augmentation of batch 0.
_SHUFFLE_TAG = 0x5348  # "SH"
_AUGMENT_TAG = 0x4147  # "AG"


class BatchPipeline(keras.utils.PyDataset):
    """Shuffled, augmented and normalized batches from in-memory arrays.

    Batch `i` of epoch `e` depends only on `(seed, e, i)`: the epoch's
    permutation comes from `np.random.default_rng([seed, e, tag])` and the
    augmentation of each batch from its own stream
    `np.random.default_rng([seed, e, tag', i])`. Batches can therefore be
    requested in any order, by any number of workers, on any backend, and a
    run resumed at epoch `e` (via `initial_epoch` or by setting `epoch`)
    sees exactly the data it would have seen without the interruption.

    Each batch is: gather images, augment (padded random crop and flip, on
    the raw pixels), scale `uint8` to `[0, 1]`, subtract `mean`, divide by
    `std`, transpose to NCHW if asked.

    Keras calls `on_epoch_end()` after every epoch, which advances `epoch`.
    Keras (3.x, all backends) also calls it once at the start of every
    `fit()`, before the first epoch, so without help the first trained epoch
    uses `initial_epoch + 1`. That is still reproducible and resumable
    (build the pipeline with the `initial_epoch` given to `fit`), but pass
    `callbacks=[EpochSync(pipeline)]` to make `epoch` equal Keras' epoch
    number exactly. Also pass `shuffle=False` to `fit`: the pipeline
    shuffles itself, while Keras' own shuffle reorders batches with Python's
    global `random` and so breaks reproducibility.

    Args:
        x: Images, NHWC, `uint8` in `[0, 255]` or float in `[0, 1]`.
        y: Integer labels, shape `(N,)` or `(N, 1)`.
        batch_size: Number of images per batch.
        mean: Per-channel mean on the `[0, 1]` scale.
        std: Per-channel standard deviation on the `[0, 1]` scale.
        augment: Whether to apply random crop and flip.
        pad: Zero padding of the random crop, in pixels (4 for 32x32).
        flip: Whether augmentation includes random horizontal flips.
        shuffle: Whether to permute the data every epoch.
        seed: Non-negative integer seed.
        data_format: `"channels_last"` (NHWC output) or `"channels_first"`
            (NCHW output).
        drop_remainder: Whether to drop the last, smaller batch.
        initial_epoch: Epoch to start at, to resume an interrupted run.
        num_classes: Optional number of classes: every label is checked to
            lie in `[0, num_classes)` here, once, on the host, so a bad label
            fails with its value before training (the loss checks labels on
            CPU only, and on an accelerator gives a bad label a NaN loss).
        shard_index: This process's shard, in `[0, shard_count)`.
        shard_count: Number of processes sharing every batch; must divide
            `batch_size`. Each batch is made whole (its augmentation is
            drawn per batch) and this shard keeps its slice, as
            `FolderStream` does; `shard_count > 1` implies
            `drop_remainder`.
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size`, passed
            to `keras.utils.PyDataset`.

    Example:

    ```python
    train = BatchPipeline(ds.x_train, ds.y_train, 128, mean=ds.mean,
                          std=ds.std, augment=True, shuffle=True, seed=0)
    model.fit(train, epochs=10, shuffle=False, callbacks=[EpochSync(train)])
    ```
    """

    def __init__(
        self,
        x,
        y,
        batch_size,
        *,
        mean,
        std,
        augment=False,
        pad=4,
        flip=True,
        shuffle=False,
        seed=0,
        data_format="channels_last",
        drop_remainder=False,
        initial_epoch=0,
        num_classes=None,
        shard_index=0,
        shard_count=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        x, y = _checked_examples(x, y, num_classes)
        mean, std = _checked_normalization(mean, std, channels=x.shape[-1])
        _check_batching(batch_size, data_format, seed, pad, shard_index, shard_count)
        shard_count, shard_index = int(shard_count), int(shard_index)

        self.x = x
        self.y = y.astype(np.int32)
        self.batch_size = int(batch_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.augment = bool(augment)
        self.pad = int(pad)
        self.flip = bool(flip)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.data_format = data_format
        self.drop_remainder = bool(drop_remainder) or shard_count > 1
        self.shard_index, self.shard_count = shard_index, shard_count
        # x * scale + offset equals (x / 255 - mean) / std with one multiply
        # and one add. The per-channel factors are laid out over a whole
        # image: NumPy broadcasting over a trailing axis of 3 is about six
        # times slower than over one long row.
        pixel_scale = 255.0 if x.dtype == np.uint8 else 1.0
        scale = (1.0 / (pixel_scale * std)).astype(np.float32)
        offset = (-mean / std).astype(np.float32)
        height, width = x.shape[1:3]
        if data_format == "channels_first":
            self._scale = np.repeat(scale, height * width)
            self._offset = np.repeat(offset, height * width)
        else:
            self._scale = np.tile(scale, height * width)
            self._offset = np.tile(offset, height * width)
        self._order_lock = threading.Lock()
        self._order_cache = None
        self.epoch = initial_epoch

    @property
    def epoch(self):
        """The current epoch; data order and augmentation depend on it."""
        return self._epoch

    @epoch.setter
    def epoch(self, value):
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {value!r}.")
        self._epoch = int(value)

    def __len__(self):
        if self.drop_remainder:
            return len(self.x) // self.batch_size
        return math.ceil(len(self.x) / self.batch_size)

    def _order(self, epoch):
        if not self.shuffle:
            return None
        # Worker threads ask for batches of the same epoch concurrently; the
        # permutation is computed once per epoch and cached as one tuple so a
        # reader never sees an epoch paired with another epoch's order.
        cache = self._order_cache
        if cache is not None and cache[0] == epoch:
            return cache[1]
        with self._order_lock:
            cache = self._order_cache
            if cache is None or cache[0] != epoch:
                rng = np.random.default_rng([self.seed, epoch, _SHUFFLE_TAG])
                cache = (epoch, rng.permutation(len(self.x)))
                self._order_cache = cache
        return cache[1]

    def indices(self, index, epoch=None):
        """Positions in `x` of the images of batch `index`.

        Args:
            index: Batch index in `[0, len(self))`.
            epoch: Epoch to compute them for; defaults to `self.epoch`.

        Returns:
            An `int64` array of indices into `x` (and `y`).

        Example:

        ```python
        pipeline.indices(0, epoch=3)
        ```
        """
        epoch = self._epoch if epoch is None else int(epoch)
        num_batches = len(self)
        if index < 0:
            index += num_batches
        if not 0 <= index < num_batches:
            raise IndexError(f"Batch index {index} out of range for {num_batches} batches.")
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.x))
        order = self._order(epoch)
        if order is None:
            return np.arange(start, stop)
        return order[start:stop]

    def __getitem__(self, index):
        epoch = self._epoch
        index = int(index)
        if index < 0:
            index += len(self)
        idx = self.indices(index, epoch)
        if self.shuffle:
            x = self.x[idx]
        else:
            # A slice avoids the gather copy; augmentation and normalisation
            # below never write into their input.
            x = self.x[idx[0] : idx[-1] + 1]
        if self.augment:
            rng = np.random.default_rng([self.seed, epoch, _AUGMENT_TAG, index])
            x = random_crop_flip(x, rng, pad=self.pad, flip=self.flip)
        if self.shard_count > 1:
            share = len(idx) // self.shard_count
            part = slice(self.shard_index * share, (self.shard_index + 1) * share)
            x, idx = x[part], idx[part]
        if self.data_format == "channels_first":
            # Transposing the raw pixels before the float conversion moves a
            # quarter of the bytes (for uint8 input).
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        shape = x.shape
        # A fresh C-ordered copy, so the in-place ops below never touch
        # self.x and the reshape is a view.
        flat = x.astype(np.float32, order="C").reshape(len(x), -1)
        flat *= self._scale
        flat += self._offset
        return flat.reshape(shape), self.y[idx]

    def on_epoch_end(self):
        """Advances `epoch`; Keras calls this after every epoch."""
        self.epoch = self._epoch + 1


class EpochSync(keras.callbacks.Callback):
    """Keeps a `BatchPipeline`'s `epoch` equal to the epoch Keras trains.

    Keras calls `on_epoch_end()` of a data set one extra time at the start of
    each `fit()`; this callback sets `pipeline.epoch` from the epoch number
    Keras passes to callbacks, before any batch of that epoch is requested.
    Epoch `e` of `fit(..., initial_epoch=k)` then always trains on the
    pipeline's epoch-`e` data, also when training is resumed or `fit` is
    called repeatedly.

    Args:
        pipeline: The training `BatchPipeline`.
        offset: Added to Keras' epoch number (rarely needed).

    Example:

    ```python
    model.fit(train, epochs=30, initial_epoch=10, shuffle=False,
              callbacks=[EpochSync(train)])
    ```
    """

    def __init__(self, pipeline, offset=0):
        super().__init__()
        self.pipeline = pipeline
        self.offset = int(offset)

    def on_epoch_begin(self, epoch, logs=None):
        self.pipeline.epoch = epoch + self.offset


class EpochRemainder(keras.utils.PyDataset):
    """The batches `start, start + 1, ...` of `source`: the rest of an epoch.

    How a run resumed inside an epoch trains only the steps that were left:
    `fit` this for the interrupted epoch alone, then `source` for the
    epochs after it. Keras numbers its batches from 0; batch `i` here is
    batch `start + i` of `source`.

    `source` can be any random-access batch source whose batch `i` of epoch
    `e` depends only on `(seed, e, i)`, such as `BatchPipeline`: it needs
    `len()` (batches per epoch), `source[i]` and an epoch that
    `EpochSync` (or the source itself) sets before the epoch's first batch.

    Args:
        source: The epoch's batches.
        start: The first batch to give.

    Example:

    >>> import numpy as np
    >>> source = BatchPipeline(np.zeros((10, 2, 2, 1)), np.arange(10), 4,
    ...                        mean=[0.0], std=[1.0])
    >>> rest = EpochRemainder(source, 1)
    >>> len(rest), rest[0][1].tolist()
    (2, [4, 5, 6, 7])
    """

    def __init__(self, source, start):
        super().__init__()
        if not 0 <= start < len(source):
            raise ValueError(f"start must be in [0, {len(source)}), got {start}.")
        self.source = source
        self.start = int(start)

    def __len__(self):
        return len(self.source) - self.start

    def __getitem__(self, index):
        return self.source[self.start + int(index)]

    def on_epoch_end(self):
        self.source.on_epoch_end()


class PaddedBatches(keras.utils.PyDataset):
    """Evaluation batches that count every image on any number of devices.

    Split across devices or processes, every batch must have the full size.
    Instead of dropping the last, smaller batch (as training does), this
    pads it to `batch_size` with copies of its first image, and gives each
    batch a third element, the sample weights: 1 for an image, 0 for
    padding. Metrics compiled as `weighted_metrics` then count each test
    image exactly once; `loss_scale` turns Keras' loss mean, which averages
    over padded batches, into the mean over the images.

    Args:
        source: The batches, e.g. a `BatchPipeline` or `FolderStream` without
            `drop_remainder`; `len()` and `source[i]` giving `(x, y)`.
        batch_size: The global batch size.
        images: How many images `source` holds.

    Example:

    >>> import numpy as np
    >>> source = BatchPipeline(np.zeros((10, 2, 2, 1)), np.arange(10), 4,
    ...                        mean=[0.0], std=[1.0])
    >>> padded = PaddedBatches(source, 4, images=10)
    >>> x, y, weights = padded[2]
    >>> x.shape, y.tolist(), weights.tolist()
    ((4, 2, 2, 1), [8, 9, 8, 8], [1.0, 1.0, 0.0, 0.0])
    >>> padded.loss_scale
    1.2
    """

    def __init__(self, source, batch_size, images):
        super().__init__()
        self.source = source
        self.batch_size = int(batch_size)
        self.images = int(images)
        if math.ceil(self.images / self.batch_size) != len(source):
            raise ValueError(
                f"{len(source)} batches of {self.batch_size} cannot hold {self.images} "
                "images: give the source without drop_remainder."
            )

    @property
    def loss_scale(self):
        """Padded over real images: Keras' loss mean times this is the images' mean
        (for a loss reduced by `sum_over_batch_size`, as every built-in one); 1 for
        no images (`--validation-split 0`: nothing to rescale)."""
        return len(self) * self.batch_size / self.images if self.images else 1.0

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        x, y = self.source[index]
        real = len(y)
        weights = np.zeros(self.batch_size, np.float32)
        weights[:real] = 1.0
        if real < self.batch_size:
            fill = self.batch_size - real
            x = np.concatenate([x, np.repeat(x[:1], fill, axis=0)])
            y = np.concatenate([y, np.repeat(y[:1], fill, axis=0)])
        return x, y, weights

    def on_epoch_end(self):
        self.source.on_epoch_end()


def _checked_examples(x, y, num_classes):
    """`x` as NHWC and `y` as one integer label per image, or a ValueError."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 4:
        raise ValueError(f"x must be NHWC (4-D), got shape {x.shape}.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"y must have shape ({len(x)},) to match x, got {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer labels, got {y.dtype}.")
    if num_classes is not None:
        check_labels(y, num_classes, where="BatchPipeline y")
    return x, y


def _checked_normalization(mean, std, channels):
    """`mean` and `std` as one float64 per channel, or a ValueError."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean.size != channels or std.size != channels:
        raise ValueError(
            f"mean and std need {channels} values (one per channel), got "
            f"{mean.size} and {std.size}."
        )
    if np.any(std <= 0):
        raise ValueError(f"std must be positive, got {tuple(std)}.")
    return mean, std


def _check_batching(batch_size, data_format, seed, pad, shard_index, shard_count):
    if isinstance(batch_size, bool) or int(batch_size) != batch_size:
        raise ValueError(f"batch_size must be an integer, got {batch_size!r}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}."
        )
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if int(pad) < 0:
        raise ValueError(f"pad must be >= 0, got {pad}.")
    _check_shards(batch_size, shard_index, shard_count)


def _check_shards(batch_size, shard_index, shard_count):
    """A shard of a global batch: in range, and every shard the same size."""
    shard_count, shard_index = int(shard_count), int(shard_index)
    if shard_count < 1 or not 0 <= shard_index < shard_count:
        raise ValueError(
            f"shard_index must be in [0, shard_count), got {shard_index} of {shard_count}."
        )
    if batch_size % shard_count:
        raise ValueError(f"batch_size {batch_size} does not split into {shard_count} equal shards.")
