"""CIFAR-10 and CIFAR-100, through `keras.datasets` or a local copy."""

import hashlib
import os
import pickle
import tarfile

import numpy as np

from keras_crl.data.dataset import Dataset
from keras_crl.data.dataset import DatasetNotAvailable
from keras_crl.data.dataset import check_labels

# Per-channel statistics of the 50,000 training images on the [0, 1] scale.
# The CIFAR-10 std is the pixel-wise one; the (0.2023, 0.1994, 0.2010) often
# copied around is a different, smaller quantity and must not be used.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee",
    "beetle", "bicycle", "bottle", "bowl", "boy", "bridge", "bus",
    "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab",
    "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man",
    "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree",
    "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit",
    "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark",
    "shrew", "skunk", "skyscraper", "snail", "snake", "spider", "squirrel",
    "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip

CIFAR100_COARSE_CLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers",
    "fruit_and_vegetables", "household_electrical_devices",
    "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals",
    "non-insect_invertebrates", "people", "reptiles", "small_mammals",
    "trees", "vehicles_1", "vehicles_2",
]  # fmt: skip

# What each variant looks like on disk. `keras_dir` is the folder that
# keras.datasets extracts into (under $KERAS_HOME/datasets); its archive is
# cached next to it as `<keras_dir>_archive`.
_SPECS = {
    "cifar10": {
        "title": "CIFAR-10",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "archive": "cifar-10-python.tar.gz",
        "sha256": ("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
        "folder": "cifar-10-batches-py",
        "keras_dir": "cifar-10-batches-py-target",
        "train_files": [f"data_batch_{i}" for i in range(1, 6)],
        "test_files": ["test_batch"],
    },
    "cifar100": {
        "title": "CIFAR-100",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "archive": "cifar-100-python.tar.gz",
        "sha256": ("85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
        "folder": "cifar-100-python",
        "keras_dir": "cifar-100-python-target",
        "train_files": ["train"],
        "test_files": ["test"],
    },
}

# The batches are pickles; only what is needed to rebuild NumPy arrays may be
# loaded, so a tampered file cannot run code.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"Refusing to load {module}.{name} from a CIFAR batch file.")


def _read_batch(path, label_key):
    with open(path, "rb") as f:
        # The batches were pickled by Python 2; "bytes" keeps its str keys
        # and the raw pixel buffer intact.
        entries = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    entries = {
        key.decode() if isinstance(key, bytes) else key: value for key, value in entries.items()
    }
    data = np.asarray(entries["data"], dtype=np.uint8)
    # Rows hold 1024 red, then 1024 green, then 1024 blue values.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(entries[label_key])


def _keras_datasets_dirs():
    # keras.datasets caches in $KERAS_HOME (default ~/.keras) and falls back
    # to /tmp/.keras when that is not writable.
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [os.path.join(home, "datasets"), os.path.join("/tmp", ".keras", "datasets")]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_local_copy(spec, data_dir):
    """Returns the folder holding the extracted batches, or None."""
    roots = [data_dir] if data_dir is not None else _keras_datasets_dirs()
    for root in roots:
        root = os.path.expanduser(os.fspath(root))
        candidates = [
            os.path.join(root, spec["folder"]),
            os.path.join(root, spec["keras_dir"], spec["folder"]),
            root,
        ]
        for folder in candidates:
            names = spec["train_files"] + spec["test_files"]
            if all(os.path.isfile(os.path.join(folder, n)) for n in names):
                return folder
        archive = os.path.join(root, spec["archive"])
        if os.path.isfile(archive):
            return _extract_archive(spec, archive, root)
    return None


def _extract_archive(spec, archive, root):
    if _sha256(archive) != spec["sha256"]:
        raise DatasetNotAvailable(
            f"{archive} does not have the published SHA-256 "
            f"{spec['sha256']}; the file is incomplete or not the "
            f"{spec['title']} archive. Download it again from {spec['url']}."
        )
    with tarfile.open(archive, "r:gz") as tar:
        # The "data" filter refuses absolute paths, links out of the target
        # and device files (Python >= 3.10.12 / 3.11.4).
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:
            tar.extractall(root)
    return os.path.join(root, spec["folder"])


def _read_local(spec, folder, label_key):
    def read(files):
        parts = [_read_batch(os.path.join(folder, f), label_key) for f in files]
        return (
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
        )

    return read(spec["train_files"]), read(spec["test_files"])


def _download_with_keras(key, label_mode):
    import keras

    if key == "cifar10":
        return keras.datasets.cifar10.load_data()
    return keras.datasets.cifar100.load_data(label_mode=label_mode)


def _not_available_message(spec, data_dir, error):
    where = os.fspath(data_dir) if data_dir is not None else os.path.join("~", ".keras", "datasets")
    return (
        f"{spec['title']} is not available: downloading {spec['url']} "
        f"failed ({type(error).__name__}: {error}). There is probably no "
        "network access. To use it offline, download that archive elsewhere "
        f"and put either the archive {spec['archive']} or its extracted "
        f"folder {spec['folder']}/ into {where} (then pass data_dir=... if "
        "that is not the default). keras.datasets itself also accepts the "
        "archive renamed to "
        f"~/.keras/datasets/{spec['keras_dir']}_archive."
    )


def _to_nhwc(x):
    # keras.datasets returns NCHW when Keras is configured for channels_first.
    if x.ndim == 4 and x.shape[-1] != 3 and x.shape[1] == 3:
        x = x.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x, dtype=np.uint8)


def _load_cifar(key, data_dir, validation_split, seed, label_mode="fine"):
    spec = _SPECS[key]
    label_key = "labels" if key == "cifar10" else f"{label_mode}_labels"
    folder = _find_local_copy(spec, data_dir)
    if folder is not None:
        (x_train, y_train), (x_test, y_test) = _read_local(spec, folder, label_key)
    else:
        try:
            (x_train, y_train), (x_test, y_test) = _download_with_keras(key, label_mode)
        except Exception as error:  # keras raises bare Exception on URLError
            raise DatasetNotAvailable(_not_available_message(spec, data_dir, error)) from error
    if key == "cifar10":
        num_classes, names = 10, CIFAR10_CLASSES
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    elif label_mode == "fine":
        num_classes, names = 100, CIFAR100_CLASSES
        mean, std = CIFAR100_MEAN, CIFAR100_STD
    else:
        num_classes, names = 20, CIFAR100_COARSE_CLASSES
        mean, std = CIFAR100_MEAN, CIFAR100_STD
    x_train, x_test = _to_nhwc(x_train), _to_nhwc(x_test)
    y_train = check_labels(y_train, num_classes, f"{spec['title']} y_train")
    y_test = check_labels(y_test, num_classes, f"{spec['title']} y_test")
    return Dataset.from_train_and_test(
        key if label_mode == "fine" else f"{key}_coarse",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=num_classes,
        class_names=list(names),
        validation_split=validation_split,
        seed=seed,
        mean=mean,
        std=std,
    )


def load_cifar10(*, data_dir=None, validation_split=0.1, seed=0):
    """Loads CIFAR-10: 32x32 colour images in 10 classes, `uint8`.

    A local copy is used first: the extracted `cifar-10-batches-py/` folder
    or the `cifar-10-python.tar.gz` archive in `data_dir` (or in
    `~/.keras/datasets` when `data_dir` is None). Otherwise
    `keras.datasets.cifar10.load_data()` downloads the archive. The
    validation set is a stratified, seeded part of the 50,000 training
    images; the 10,000 test images are left whole. `mean`/`std` are the
    published statistics of the training images.

    Args:
        data_dir: Folder with a local copy, or None.
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.

    Returns:
        A `Dataset` named `"cifar10"`.

    Raises:
        DatasetNotAvailable: If there is no local copy and the download
            fails; the message says where to put the files.

    Example:

    ```python
    ds = load_cifar10(validation_split=0.1, seed=0)
    ds.x_train.shape  # (45000, 32, 32, 3)
    ```
    """
    return _load_cifar("cifar10", data_dir, validation_split, seed)


def load_cifar100(*, data_dir=None, validation_split=0.1, seed=0, label_mode="fine"):
    """Loads CIFAR-100: 32x32 colour images in 100 classes, `uint8`.

    Looks for a local copy (`cifar-100-python/` or `cifar-100-python.tar.gz`)
    like `load_cifar10` does, else downloads through
    `keras.datasets.cifar100.load_data()`.

    Args:
        data_dir: Folder with a local copy, or None.
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.
        label_mode: `"fine"` (100 classes) or `"coarse"` (20 superclasses).

    Returns:
        A `Dataset` named `"cifar100"` (or `"cifar100_coarse"`).

    Raises:
        DatasetNotAvailable: If there is no local copy and the download
            fails; the message says where to put the files.

    Example:

    ```python
    ds = load_cifar100(validation_split=0.1, seed=0)
    ds.num_classes  # 100
    ```
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}.")
    return _load_cifar("cifar100", data_dir, validation_split, seed, label_mode)
