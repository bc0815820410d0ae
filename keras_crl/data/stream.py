"""`FolderStream`: batches decoded from image files when Keras asks for them.

When Keras asks for batch `i`, a `FolderStream` reads, decodes and augments
that batch's files (`augment.random_resized_crop_box` and a flip for
training, `augment.center_crop_box` for evaluation) in one of `workers`
threads or processes. At most the prefetch window (`max_queue_size` batches
waiting, plus one per worker being made) is in memory, whatever the size of
the folder. `folder_stream.load_stream_folder` lists the folder it reads.

Batch `i` of epoch `e` is a pure function of `(seed, e, i)`, as in
`BatchPipeline`: the epoch's order is the permutation `BatchPipeline` draws,
and each image's crop and flip come from its own generator keyed by its
position in that order, so the batches are the same for any worker count,
backend and shard layout, and a resumed run can ask for any batch directly.
With `shard_count=n` every global batch is cut into `n` equal slices and
this process decodes only slice `shard_index`.

Why a `PyDataset` (measured: `benchmarks/stream.py`): only a `PyDataset` is
given the batch index and Keras' epoch by `fit`, which keeps a batch
random-access by `(epoch, index)`; a grain dataset is iterated afresh every
epoch, and its checkpointable iterator lives inside Keras. Workers are
threads by default: Pillow's decode and resize and NumPy release the GIL, and
a thread hands its batch over without pickling it through a pipe.
"""

import functools
import math
import os

import keras
import numpy as np

from keras_crl._optional import optional_import
from keras_crl.data.augment import CROP_RATIO
from keras_crl.data.augment import CROP_SCALE
from keras_crl.data.augment import center_crop_box
from keras_crl.data.augment import random_resized_crop_box
from keras_crl.data.dataset import check_labels
from keras_crl.data.dataset import check_seed
from keras_crl.data.folder import crop_to_box
from keras_crl.data.folder import read_image
from keras_crl.data.pipeline import _AUGMENT_TAG
from keras_crl.data.pipeline import _SHUFFLE_TAG
from keras_crl.data.pipeline import BatchPipeline
from keras_crl.data.pipeline import _check_shards

# ImageNet's per-channel statistics on the [0, 1] scale, the constants
# torchvision and keras.applications use; estimating them would need a pass
# over the decoded data, which streaming avoids.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@functools.lru_cache(maxsize=2)
def _permutation(seed, epoch, n):
    # BatchPipeline's epoch order; cached per process (workers and the
    # main process each draw it once per epoch; lru_cache is thread-safe).
    return np.random.default_rng([seed, epoch, _SHUFFLE_TAG]).permutation(n)


class FolderStream(keras.utils.PyDataset):
    """Batches decoded from image files when Keras asks for them.

    Batch `index` of `epoch`: the images at positions
    `[index * batch_size, (index + 1) * batch_size)` of the epoch's order
    (a seeded permutation when `shuffle`, else the file order), of which
    this shard takes its slice; each is decoded to RGB, then with `augment`
    random-resized-cropped (`scale`, `ratio`) and flipped with probability
    1/2 by `np.random.default_rng([seed, epoch, tag, position])`, without
    `augment` resized on its shorter side and center-cropped; the `uint8`
    batch is normalized exactly as `BatchPipeline` does.

    Keras calls `on_epoch_end()` after every epoch (and once before the
    first); pass `callbacks=[EpochSync(stream)]` and `shuffle=False` to
    `fit`, as for `BatchPipeline`.

    Args:
        files: Image paths.
        labels: Integer labels, one per file.
        batch_size: Images per global batch (all shards together).
        image_size: Side of the square output images.
        mean: Per-channel mean on the `[0, 1]` scale (ImageNet's by default).
        std: Per-channel standard deviation on the `[0, 1]` scale.
        augment: Random resized crop and flip (training) instead of resize
            and center crop (evaluation).
        shuffle: Whether to permute the files every epoch.
        seed: Non-negative integer seed.
        data_format: `"channels_last"` or `"channels_first"`.
        drop_remainder: Whether to drop the last, smaller batch; implied
            when `shard_count > 1` (every batch splits evenly).
        initial_epoch: Epoch to start at.
        num_classes: Optional; every label is checked to lie in
            `[0, num_classes)`, here, on the host.
        shard_index: This process's shard, in `[0, shard_count)`.
        shard_count: Number of shards (hosts); must divide `batch_size`.
        scale: Area range of the random resized crop.
        ratio: Aspect-ratio range of the random resized crop.
        boxes: Optional mapping from a file to the `(left, top, right,
            bottom)` box its image is cut to before anything else (the
            bounding boxes of CUB-200-2011 and Stanford Cars).
        **kwargs: `workers`, `use_multiprocessing`, `max_queue_size`, passed
            to `keras.utils.PyDataset`.

    Raises:
        ValueError: At construction, for bad arguments or labels; when a
            batch is made, naming the file that is corrupt or truncated.

    Example:

    ```python
    train = FolderStream(files, labels, 256, image_size=224, augment=True,
                         shuffle=True, workers=8, use_multiprocessing=True)
    model.fit(train, epochs=90, shuffle=False, callbacks=[EpochSync(train)])
    ```
    """

    def __init__(
        self,
        files,
        labels,
        batch_size,
        *,
        image_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        augment=False,
        shuffle=False,
        seed=0,
        data_format="channels_last",
        drop_remainder=False,
        initial_epoch=0,
        num_classes=None,
        shard_index=0,
        shard_count=1,
        scale=CROP_SCALE,
        ratio=CROP_RATIO,
        boxes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        files = [os.fspath(f) for f in files]
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(files):
            raise ValueError(
                f"labels must have shape ({len(files)},) to match files, got {labels.shape}."
            )
        if num_classes is not None:
            labels = check_labels(labels, num_classes, where="FolderStream labels")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if isinstance(image_size, (tuple, list)):
            if len(image_size) != 2 or image_size[0] != image_size[1]:
                raise ValueError(f"image_size must be square, got {tuple(image_size)}.")
            image_size = image_size[0]
        if int(image_size) < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}.")
        _check_shards(batch_size, shard_index, shard_count)
        shard_count, shard_index = int(shard_count), int(shard_index)
        if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"Bad crop ranges: scale={scale}, ratio={ratio}.")
        self.files = files
        self.labels = labels.astype(np.int32)
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.augment = bool(augment)
        self.shuffle = bool(shuffle)
        self.seed = check_seed(seed)
        self.drop_remainder = bool(drop_remainder) or shard_count > 1
        self.shard_index, self.shard_count = shard_index, shard_count
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.boxes = {os.fspath(f): tuple(box) for f, box in (boxes or {}).items()}
        # Normalization and layout are BatchPipeline's, applied to each
        # decoded batch (it also checks mean, std and data_format now).
        self._format = dict(mean=mean, std=std, data_format=data_format)
        self._normalize(np.zeros((1, 1, 1, 3), np.uint8), np.zeros(1, np.int32))
        self.epoch = initial_epoch

    epoch = BatchPipeline.epoch

    def __len__(self):
        if self.drop_remainder:
            return len(self.files) // self.batch_size
        return math.ceil(len(self.files) / self.batch_size)

    def positions(self, index):
        """Positions in the epoch's order of this shard's images of batch `index`.

        Args:
            index: Batch index in `[0, len(self))`.

        Returns:
            A `range`.

        Example:

        ```python
        stream.positions(0)  # range(0, 32) for batch_size 32, one shard
        ```
        """
        num_batches = len(self)
        if index < 0:
            index += num_batches
        if not 0 <= index < num_batches:
            raise IndexError(f"Batch index {index} out of range for {num_batches} batches.")
        start = index * self.batch_size
        stop = min(start + self.batch_size, len(self.files))
        share = (stop - start) // self.shard_count
        start += self.shard_index * share
        return range(start, start + share if self.shard_count > 1 else stop)

    def indices(self, index, epoch=None):
        """Indices into `files` of this shard's images of batch `index`.

        Args:
            index: Batch index in `[0, len(self))`.
            epoch: Epoch to compute them for; defaults to `self.epoch`.

        Returns:
            An `int64` array.

        Example:

        ```python
        [stream.files[i] for i in stream.indices(0, epoch=3)]
        ```
        """
        epoch = self._epoch if epoch is None else int(epoch)
        positions = self.positions(index)
        if not self.shuffle:
            return np.arange(positions.start, positions.stop)
        return _permutation(self.seed, epoch, len(self.files))[positions.start : positions.stop]

    def load(self, file, rng):
        """One image as `uint8` `(size, size, 3)`, augmented with `rng` if `augment`.

        Args:
            file: Image path.
            rng: The image's `np.random.Generator` (unused without `augment`).

        Returns:
            A `uint8` array.

        Raises:
            ValueError: Naming `file`, if it is corrupt or truncated.

        Example:

        ```python
        stream.load(stream.files[0], np.random.default_rng(0))
        ```
        """
        Image = optional_import("PIL.Image", "data", "reading images")

        image = read_image(file, "RGB")
        if file in self.boxes:
            image = crop_to_box(image, self.boxes[file], file)
        size = (self.image_size, self.image_size)
        width, height = image.size
        if self.augment:
            box = random_resized_crop_box(width, height, rng, self.scale, self.ratio)
            image = image.resize(size, Image.Resampling.BILINEAR, box=box)
            pixels = np.asarray(image, dtype=np.uint8)
            return pixels[:, ::-1] if rng.random() < 0.5 else pixels
        box = center_crop_box(width, height, self.image_size)
        return np.asarray(image.resize(size, Image.Resampling.BILINEAR, box=box), np.uint8)

    def __getitem__(self, index):
        epoch = self._epoch
        index = int(index)
        if index < 0:
            index += len(self)
        positions = self.positions(index)
        indices = self.indices(index, epoch)
        size = self.image_size
        x = np.empty((len(indices), size, size, 3), np.uint8)
        for row, (position, i) in enumerate(zip(positions, indices)):
            rng = np.random.default_rng([self.seed, epoch, _AUGMENT_TAG, position])
            x[row] = self.load(self.files[i], rng)
        return self._normalize(x, self.labels[indices])

    def _normalize(self, x, y):
        return BatchPipeline(x, y, len(x), **self._format)[0]

    def on_epoch_end(self):
        """Advances `epoch`; Keras calls this after every epoch."""
        self.epoch = self._epoch + 1
