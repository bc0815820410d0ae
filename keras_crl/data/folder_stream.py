"""Image folders larger than RAM, as a source: listed once, decoded by `FolderStream`.

`load_stream_folder` lists a class-per-folder tree with
`folder.scan_image_folder` (the same classes, file order, splits and error
messages as the in-memory `load_image_folder`) and decodes nothing; the
`StreamingFolder` it returns makes each split's `FolderStream`.
"""

import dataclasses
import os

import numpy as np

from keras_crl.data.dataset import check_seed
from keras_crl.data.dataset import check_split
from keras_crl.data.dataset import stratified_split
from keras_crl.data.folder import scan_image_folder
from keras_crl.data.stream import IMAGENET_MEAN
from keras_crl.data.stream import IMAGENET_STD
from keras_crl.data.stream import FolderStream


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

        The same call as `Dataset.pipeline`, so that training takes either
        source. The stream normalizes with this folder's `mean` and `std` and
        checks labels against `num_classes`.

        Args:
            split: Which split.
            batch_size: Global batch size.
            limit: Use only the first `limit` files of the split.
            **options: More `FolderStream` arguments (`augment`, `shuffle`,
                `seed`, `initial_epoch`, `data_format`, `drop_remainder`,
                `shard_index`, `shard_count`, ...); they override this
                folder's.

        Returns:
            A `FolderStream`.
        """
        check_split(split)
        files = getattr(self, f"files_{split}")[:limit]
        labels = getattr(self, f"y_{split}")[:limit]
        options = {
            "image_size": self.image_size,
            "mean": self.mean,
            "std": self.std,
            "num_classes": self.num_classes,
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
            labels, test_split, np.random.default_rng(check_seed(test_seed))
        )
        test_files, test_labels = [files[i] for i in test], labels[test]
    keep, hold = stratified_split(
        labels[rest], validation_split, np.random.default_rng(check_seed(seed))
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
