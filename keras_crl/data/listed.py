"""Data sets read from their publishers' annotation files as lists of images.

CUB-200-2011, Stanford Cars, Adience and ImageNet each come with files that
list the images, their labels, their official train/test split and, for some,
a bounding box. Their loaders read those files into lists; `load_listed`
turns the lists into a `Dataset` (decoded into memory) or a `StreamingFolder`
(decoded batch by batch). Either way the validation part is a stratified,
seeded part of the official training images only, and the official test
images are the test split.
"""

import os

import numpy as np

from keras_crl._optional import optional_import
from keras_crl.data.dataset import DatasetNotAvailable
from keras_crl.data.dataset import check_labels
from keras_crl.data.dataset import validation_indices
from keras_crl.data.folder import check_images
from keras_crl.data.folder import decoded_dataset
from keras_crl.data.folder_stream import StreamingFolder
from keras_crl.data.stream import IMAGENET_MEAN
from keras_crl.data.stream import IMAGENET_STD


def find_root(data_dir, marker, candidates, title, how_to_get):
    """The first of `data_dir`'s candidate folders that holds `marker`.

    Args:
        data_dir: The folder the user named.
        marker: A file or folder name that only the data set's root has.
        candidates: Relative paths under `data_dir` to try, `""` for itself.
        title: The data set's name, for the message.
        how_to_get: Where the files come from, for the message.

    Returns:
        The root folder's path.

    Raises:
        DatasetNotAvailable: Naming every path tried, if none holds `marker`.

    Example:

    ```python
    root = find_root("/data", "images.txt", ["", "CUB_200_2011"], "CUB", "...")
    ```
    """
    if data_dir is None:
        raise DatasetNotAvailable(
            f"{title} is not downloaded automatically: {how_to_get} Then pass "
            "data_dir=... (--data-dir) pointing at it."
        )
    data_dir = os.path.expanduser(os.fspath(data_dir))
    tried = [os.path.join(data_dir, c, marker) for c in candidates]
    for path in tried:
        if os.path.exists(path):
            return os.path.dirname(path)
    raise DatasetNotAvailable(f"{title} not found: none of {', '.join(tried)} exists. {how_to_get}")


def require_file(path, what):
    """Returns `path` if it is a file, else raises `FileNotFoundError` naming it.

    Example:

    ```python
    require_file(os.path.join(root, "images.txt"), "CUB-200-2011's image list")
    ```
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} is missing.")
    return path


def read_mat(path, key):
    """Reads variable `key` of a MATLAB file, naming the file on any failure.

    Args:
        path: The `.mat` file.
        key: The variable to return.

    Returns:
        The variable, loaded with `squeeze_me=True` (a struct array becomes
        a NumPy record array, a cell array an object array).

    Raises:
        FileNotFoundError: If `path` is missing.
        ValueError: Naming `path`, if it is not a readable MATLAB file or
            lacks `key`.

    Example:

    ```python
    names = read_mat("devkit/cars_meta.mat", "class_names")
    ```
    """
    io = optional_import("scipy.io", "data", "reading MATLAB files")

    require_file(path, "MATLAB file")
    try:
        contents = io.loadmat(path, squeeze_me=True)
    except Exception as error:  # scipy raises many types for a broken file
        raise ValueError(
            f"{path} is not a readable MATLAB file ({type(error).__name__}: {error})."
        ) from error
    if key not in contents:
        raise ValueError(f"{path} has no variable {key!r}; it is not the published file.")
    return contents[key]


def load_listed(
    name,
    files,
    labels,
    test_files,
    test_labels,
    *,
    class_names,
    validation_split=0.1,
    seed=0,
    image_size=224,
    boxes=None,
    stream=False,
    mean=None,
    std=None,
    workers=None,
    use_multiprocessing=False,
    max_queue_size=10,
    shard_index=0,
    shard_count=1,
):
    """A `Dataset` or `StreamingFolder` from the official train and test lists.

    The validation part is held out of `files` only (stratified, drawn with
    `seed`); the same files go to validation in memory and streamed.

    Args:
        name: The data set's name.
        files, labels: The official training images and their labels.
        test_files, test_labels: The official test images and labels.
        class_names: One name per class.
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.
        image_size: Side of the square images (an integer or `(h, w)`; the
            stream needs a square).
        boxes: Optional mapping from a file to the `(left, top, right,
            bottom)` box its image is cut to first.
        stream: Decode batch by batch (`StreamingFolder`) instead of into
            memory (`Dataset`).
        mean, std: Streaming: the normalisation (ImageNet's by default). In
            memory they are computed on the training part.
        workers, use_multiprocessing, max_queue_size, shard_index,
            shard_count: Streaming only, as for `load_stream_folder`.

    Returns:
        A `Dataset` (`uint8` images) or a `StreamingFolder`.

    Raises:
        ValueError: Naming the file, for a corrupt image or a box outside
            its image (in memory, before anything is returned).

    Example:

    ```python
    ds = load_listed("birds", files, labels, test_files, test_labels,
                     class_names=names, image_size=64)
    ```
    """
    num_classes = len(class_names)
    labels = check_labels(labels, num_classes, f"{name} training labels")
    test_labels = check_labels(test_labels, num_classes, f"{name} test labels")
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size must be (height, width), got {image_size}.")
    if not stream:
        # Every file is checked before the long decode starts.
        check_images(list(files) + list(test_files), same_size=False)
        return decoded_dataset(
            name,
            files,
            labels,
            test_files,
            test_labels,
            class_names=class_names,
            validation_split=validation_split,
            seed=seed,
            image_size=image_size,
            boxes=boxes,
        )
    if image_size[0] != image_size[1]:
        raise ValueError(f"A stream makes square images; image_size is {image_size}.")
    keep, hold = validation_indices(labels, validation_split, seed)
    workers = os.cpu_count() if workers is None else int(workers)
    return StreamingFolder(
        name=name,
        files_train=[files[i] for i in keep],
        y_train=labels[keep],
        files_val=[files[i] for i in hold],
        y_val=labels[hold],
        files_test=list(test_files),
        y_test=test_labels,
        num_classes=num_classes,
        class_names=list(class_names),
        image_size=image_size[0],
        mean=tuple(IMAGENET_MEAN if mean is None else mean),
        std=tuple(IMAGENET_STD if std is None else std),
        stream_options=dict(
            workers=max(workers, 1),
            use_multiprocessing=bool(use_multiprocessing) and workers > 0,
            max_queue_size=int(max_queue_size),
            shard_index=shard_index,
            shard_count=shard_count,
            boxes=boxes,
        ),
    )
