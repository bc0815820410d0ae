"""Data sets and the input pipeline of keras-crl.

Every loader returns a `Dataset`: NumPy arrays in NHWC layout plus the
per-channel statistics used for normalization (`"folder_stream"`: a
`StreamingFolder`, file lists decoded batch by batch). Either source's
`pipeline()` gives the batches: shuffled, augmented and normalized in NumPy,
so that the same batches reach the model on the TensorFlow, PyTorch and JAX
backends.

Example:

```python
from keras_crl.data import EpochSync, load_dataset

ds = load_dataset("digits", validation_split=0.1, seed=0)
train = ds.pipeline("train", 64, augment=True, shuffle=True, seed=0)
model.fit(train, epochs=5, shuffle=False, callbacks=[EpochSync(train)])
```
"""

import importlib

from keras_crl.data.augment import random_crop_flip
from keras_crl.data.dataset import Dataset
from keras_crl.data.dataset import DatasetNotAvailable
from keras_crl.data.dataset import channel_stats
from keras_crl.data.dataset import check_labels
from keras_crl.data.dataset import check_seed
from keras_crl.data.dataset import split_validation
from keras_crl.data.dataset import stratified_split
from keras_crl.data.folder_stream import StreamingFolder
from keras_crl.data.pipeline import BatchPipeline
from keras_crl.data.pipeline import EpochRemainder
from keras_crl.data.pipeline import EpochSync
from keras_crl.data.pipeline import PaddedBatches
from keras_crl.data.stream import FolderStream

# Loader modules are imported only when their data set is asked for, so that
# importing keras_crl.data never pulls in PIL or scipy (keras_crl._optional).
_REGISTRY = {
    "digits": ("keras_crl.data.digits", "load_digits"),
    "synthetic": ("keras_crl.data.synthetic", "load_synthetic"),
    "cifar10": ("keras_crl.data.cifar", "load_cifar10"),
    "cifar100": ("keras_crl.data.cifar", "load_cifar100"),
    "svhn": ("keras_crl.data.svhn", "load_svhn"),
    "folder": ("keras_crl.data.folder", "load_image_folder"),
    # The same folder, listed only and decoded batch by batch (FolderStream).
    "folder_stream": ("keras_crl.data.folder_stream", "load_stream_folder"),
    # The paper's other benchmarks, read from their publishers' files
    # (data.listed); `_stream` names decode batch by batch.
    "cub200": ("keras_crl.data.cub200", "load_cub200"),
    "cub200_stream": ("keras_crl.data.cub200", "load_cub200_stream"),
    "stanford_cars": ("keras_crl.data.stanford_cars", "load_stanford_cars"),
    "stanford_cars_stream": ("keras_crl.data.stanford_cars", "load_stanford_cars_stream"),
    "adience": ("keras_crl.data.adience", "load_adience"),
    "imagenet": ("keras_crl.data.imagenet", "load_imagenet"),
}


def list_datasets():
    """Names accepted by `load_dataset`.

    Returns:
        A list of strings.

    Example:

    >>> list_datasets()
    ['digits', 'synthetic', 'cifar10', 'cifar100', 'svhn', 'folder', 'folder_stream',
     'cub200', 'cub200_stream', 'stanford_cars', 'stanford_cars_stream', 'adience', 'imagenet']
    """
    return list(_REGISTRY)


def loader_options(name):
    """The options `load_dataset(name, ...)` passes on to the data set's loader.

    Args:
        name: One of `list_datasets()`.

    Returns:
        A set of keyword names, e.g. `{"image_size", "test_dir", ...}` for
        `"folder"`; empty for `"cifar10"`.

    Example:

    >>> sorted(loader_options("digits"))
    ['test_seed', 'test_split']
    """
    import inspect

    module_name, function_name = _REGISTRY[str(name).strip().lower()]
    loader = getattr(importlib.import_module(module_name), function_name)
    parameters = inspect.signature(loader).parameters
    options = {k for k, p in parameters.items() if p.kind != p.VAR_KEYWORD}
    base = str(name).strip().lower().removesuffix("_stream")
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        if base != name and base in _REGISTRY:  # `load_X_stream(**kwargs)` wraps `load_X`
            return loader_options(base) - {"stream"}
        # The benchmark loaders pass the rest on to data.listed.load_listed.
        from keras_crl.data.listed import load_listed

        forwarded = set(inspect.signature(load_listed).parameters)
        options |= forwarded - {"name", "files", "labels", "test_files", "test_labels"}
        options -= {"class_names", "boxes"}
    return options - {"data_dir", "validation_split", "seed"}


def load_dataset(name, *, data_dir=None, validation_split=0.1, seed=0, **kwargs):
    """Loads a data set by name.

    Args:
        name: One of `list_datasets()`.
        data_dir: Where the files of the data set live or are downloaded to.
            For `"folder"` and `"folder_stream"` this is the image folder
            itself (or pass `path`).
        validation_split: Fraction of the training data held out for
            validation, in `[0, 1)`. The test set is never touched.
        seed: Non-negative integer seed of the validation split (and of the
            generated data for `"synthetic"`).
        **kwargs: Passed to the loader, e.g. `num_classes` for
            `"synthetic"`, `image_size` for `"folder"`, `crop_boxes` for
            `"cub200"` and `"stanford_cars"`, `fold` for `"adience"`.

    Returns:
        A `Dataset`; for `"folder_stream"`, the `_stream` names and
        `"imagenet"` a `StreamingFolder` (file lists, whose `pipeline()`
        decodes batch by batch).

    Raises:
        ValueError: If `name` is unknown; the message lists valid names.
        DatasetNotAvailable: If the files cannot be found or downloaded.

    Example:

    ```python
    ds = load_dataset("digits", validation_split=0.1, seed=0)
    ds.x_train.shape  # (1294, 8, 8, 1)
    ```
    """
    key = str(name).strip().lower()
    if key not in _REGISTRY:
        raise ValueError(f"Unknown dataset {name!r}. Valid names: {', '.join(list_datasets())}.")
    check_seed(seed)
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}.")
    module_name, function_name = _REGISTRY[key]
    loader = getattr(importlib.import_module(module_name), function_name)
    if key in ("folder", "folder_stream"):
        path = kwargs.pop("path", None) or data_dir
        if path is None:
            raise ValueError(
                f"load_dataset({key!r}) needs the image folder: pass data_dir=... or path=..."
            )
        return loader(path, validation_split=validation_split, seed=seed, **kwargs)
    return loader(data_dir=data_dir, validation_split=validation_split, seed=seed, **kwargs)


__all__ = [
    "BatchPipeline",
    "Dataset",
    "DatasetNotAvailable",
    "EpochRemainder",
    "PaddedBatches",
    "EpochSync",
    "FolderStream",
    "StreamingFolder",
    "channel_stats",
    "check_labels",
    "check_seed",
    "list_datasets",
    "load_dataset",
    "loader_options",
    "random_crop_flip",
    "split_validation",
    "stratified_split",
]
