"""Image folders larger than RAM: files listed once, decoded batch by batch.

`load_stream_folder` lists a class-per-folder tree with
`folder.scan_image_folder` (the same classes, file order, splits and error
messages as the in-memory `load_image_folder`) and decodes nothing.
`FolderStream` is a `keras.utils.PyDataset`: when Keras asks for batch `i`
it reads, decodes and augments that batch's files (ImageNet-style random
resized crop and flip for training, shorter-side resize and center crop for
evaluation) in one of `workers` processes. At most the prefetch window
(`max_queue_size` batches waiting, plus one per worker being made) is in
memory, whatever the size of the folder.

Batch `i` of epoch `e` is a pure function of `(seed, e, i)`, as in
`BatchPipeline`, and the epoch's file order is the same permutation
`BatchPipeline` draws: `np.random.default_rng([seed, e, tag])`. Each image's
crop and flip come from its own generator keyed by `(seed, e, tag', p)`, `p`
its position in the epoch's order, so the batches are the same for any
worker count, on every backend, for every shard layout, and a resumed run
can ask for any batch of any epoch directly. `EpochSync` keeps `epoch` equal
to Keras' epoch, exactly as for `BatchPipeline`.

Sharding: with `shard_count=n`, every global batch of `batch_size` images
is cut into `n` equal slices and this process reads, decodes and returns
only slice `shard_index`; the slices of all shards concatenated are the
global batch.

Why `PyDataset` and not grain (measured: `benchmarks/stream.py`,
`benchmarks/results/stream.md`): Keras 3.15's `fit` takes both on every
backend, but only a `PyDataset` is given the batch index and Keras' epoch
(`__getitem__(i)`, `on_epoch_end()`), which keeps a batch random-access by
`(epoch, index)` and the same for any worker count. A grain dataset handed
to `fit` is simply iterated afresh every epoch: a reshuffle tied to Keras'
epoch would need a repeated stream whose position is unrelated to it, and
grain's checkpointable iterator state lives in an iterator Keras creates and
does not expose. Here the checkpointable position is `(epoch, batch index)`.
grain 0.2.18's `mp_prefetch` with the same per-image function was also
slower on the development machine (its workers start with every epoch's
iteration), and it would be one more dependency.

Workers are threads by default: Pillow's decode and resize and NumPy's
arithmetic release the GIL, and a thread hands its batch over without the
pickling through a pipe that a worker process needs (a float32 batch of 32
at 224 px is 19 MB), nor a fork of a process running JAX or TensorFlow.
"""

import dataclasses
import functools
import math
import os

import keras
import numpy as np

from keras_crl.data.dataset import _check_seed
from keras_crl.data.dataset import check_labels
from keras_crl.data.dataset import stratified_split
from keras_crl.data.folder import crop_to_box
from keras_crl.data.folder import read_image
from keras_crl.data.folder import scan_image_folder
from keras_crl.data.pipeline import _AUGMENT_TAG
from keras_crl.data.pipeline import _SHUFFLE_TAG
from keras_crl.data.pipeline import BatchPipeline

# ImageNet's per-channel statistics on the [0, 1] scale, the constants
# torchvision and keras.applications use; estimating them would need a pass
# over the decoded data, which is what this module avoids.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's RandomResizedCrop defaults: area fraction and aspect ratio.
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
# Evaluation: resize the shorter side to size / 0.875 (256 for 224), then
# cut the central size x size square.
CENTER_FRACTION = 0.875


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
    batch is normalised exactly as `BatchPipeline` does.

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
        shard_count, shard_index = int(shard_count), int(shard_index)
        if shard_count < 1 or not 0 <= shard_index < shard_count:
            raise ValueError(
                f"shard_index must be in [0, shard_count), got {shard_index} of {shard_count}."
            )
        if batch_size % shard_count:
            raise ValueError(
                f"batch_size {batch_size} does not split into {shard_count} equal shards."
            )
        if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
            raise ValueError(f"Bad crop ranges: scale={scale}, ratio={ratio}.")
        self.files = files
        self.labels = labels.astype(np.int32)
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.augment = bool(augment)
        self.shuffle = bool(shuffle)
        self.seed = _check_seed(seed)
        self.drop_remainder = bool(drop_remainder) or shard_count > 1
        self.shard_index, self.shard_count = shard_index, shard_count
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.boxes = {os.fspath(f): tuple(box) for f, box in (boxes or {}).items()}
        # Normalisation and layout are BatchPipeline's, applied to each
        # decoded batch (it also checks mean, std and data_format now).
        self._format = dict(mean=mean, std=std, data_format=data_format)
        self._normalise(np.zeros((1, 1, 1, 3), np.uint8), np.zeros(1, np.int32))
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
        from PIL import Image

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
        return self._normalise(x, self.labels[indices])

    def _normalise(self, x, y):
        return BatchPipeline(x, y, len(x), **self._format)[0]

    def on_epoch_end(self):
        """Advances `epoch`; Keras calls this after every epoch."""
        self.epoch = self._epoch + 1


@dataclasses.dataclass
class StreamingFolder:
    """An image folder listed but not decoded: its splits as file lists.

    What `load_stream_folder` returns; `pipeline()` makes the `FolderStream`
    of a split. It has the attributes of a `Dataset` that do not hold
    pixels (`num_classes`, `class_names`, `mean`, `std`, `input_shape`,
    `y_train`, `y_val`, `y_test`).

    Args:
        name: The data set's name.
        files_train, y_train: Training files and labels.
        files_val, y_val: Validation files and labels.
        files_test, y_test: Test files and labels.
        num_classes: Number of classes.
        class_names: One name per class.
        image_size: Side of the square images the streams make.
        mean, std: Per-channel statistics on the `[0, 1]` scale.
        stream_options: Passed to every `FolderStream` (`workers`,
            `use_multiprocessing`, `max_queue_size`, `shard_index`,
            `shard_count`).

    Example:

    ```python
    ds = load_stream_folder("/data/imagenet/train", image_size=224)
    train = ds.pipeline("train", 256, augment=True, shuffle=True, seed=0)
    ```
    """

    name: str
    files_train: list
    y_train: np.ndarray
    files_val: list
    y_val: np.ndarray
    files_test: list
    y_test: np.ndarray
    num_classes: int
    class_names: list
    image_size: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    stream_options: dict = dataclasses.field(default_factory=dict)

    @property
    def input_shape(self):
        """The shape of one image, `(H, W, C)`."""
        return (self.image_size, self.image_size, 3)

    def pipeline(self, split, batch_size, *, limit=None, **options):
        """The `FolderStream` of `"train"`, `"val"` or `"test"`.

        Args:
            split: Which split.
            batch_size: Global batch size.
            limit: Use only the first `limit` files of the split.
            **options: More `FolderStream` arguments (`augment`, `shuffle`,
                `seed`, `data_format`, ...); they override this folder's.

        Returns:
            A `FolderStream`.
        """
        files = getattr(self, f"files_{split}")[:limit]
        labels = getattr(self, f"y_{split}")[:limit]
        options = {
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
            **self.stream_options,
            **options,
        }
        return FolderStream(files, labels, batch_size, **options)


def load_stream_folder(
    path,
    image_size=224,
    *,
    validation_split=0.1,
    seed=0,
    test_dir=None,
    test_split=0.2,
    test_seed=0,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    name=None,
    workers=None,
    use_multiprocessing=False,
    max_queue_size=10,
    shard_index=0,
    shard_count=1,
):
    """Lists a class-per-folder image tree for streaming; decodes nothing.

    The listing, class names, test split (`test_dir`, or a stratified
    `test_split` drawn with `test_seed`) and validation split (stratified,
    drawn with `seed`) are those of `load_image_folder`, so both loaders put
    the same files in the same splits. Images are checked only when they are
    decoded, batch by batch: a corrupt or truncated file stops training with
    an error naming it.

    Args:
        path: Root of the training images, one sub-folder per class.
        image_size: Side of the square images (an integer or `(s, s)`).
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.
        test_dir: Optional root of the test images.
        test_split: Fraction of `path` used as test set without `test_dir`.
        test_seed: Seed of that test split.
        mean, std: Normalisation (ImageNet's constants by default).
        name: Name; defaults to the folder name.
        workers: Decoding threads (or processes) per stream; defaults to
            the CPU count. `0` decodes in the training process, in turn
            with the training step.
        use_multiprocessing: Decode in worker processes instead of threads
            (each batch then travels back through a pipe).
        max_queue_size: Batches prefetched per stream.
        shard_index, shard_count: This process's share of every batch.

    Returns:
        A `StreamingFolder`.

    Raises:
        ValueError: Naming the folder, for a missing folder, an empty class
            folder or a test class that is not a training class.

    Example:

    ```python
    ds = load_stream_folder("/data/imagenet/train", image_size=224,
                            test_dir="/data/imagenet/val", workers=8)
    ```
    """
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2 or image_size[0] != image_size[1]:
            raise ValueError(f"image_size must be square, got {tuple(image_size)}.")
        image_size = image_size[0]
    if not 0.0 <= test_split < 1.0:
        raise ValueError(f"test_split must be in [0, 1), got {test_split}.")
    class_names, files, labels = scan_image_folder(path)
    if test_dir is not None:
        _, test_files, test_labels = scan_image_folder(test_dir, class_names)
        rest = np.arange(len(files))
    else:
        rest, test = stratified_split(
            labels, test_split, np.random.default_rng(_check_seed(test_seed))
        )
        test_files, test_labels = [files[i] for i in test], labels[test]
    keep, hold = stratified_split(
        labels[rest], validation_split, np.random.default_rng(_check_seed(seed))
    )
    workers = os.cpu_count() if workers is None else int(workers)
    if name is None:
        name = os.path.basename(os.path.normpath(os.fspath(path)))
    return StreamingFolder(
        name=name,
        files_train=[files[i] for i in rest[keep]],
        y_train=labels[rest[keep]],
        files_val=[files[i] for i in rest[hold]],
        y_val=labels[rest[hold]],
        files_test=list(test_files),
        y_test=np.asarray(test_labels, np.int32),
        num_classes=len(class_names),
        class_names=class_names,
        image_size=int(image_size),
        mean=tuple(mean),
        std=tuple(std),
        stream_options=dict(
            workers=max(workers, 1),
            use_multiprocessing=bool(use_multiprocessing) and workers > 0,
            max_queue_size=int(max_queue_size),
            shard_index=shard_index,
            shard_count=shard_count,
        ),
    )
