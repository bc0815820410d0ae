"""SVHN cropped digits (format 2): 32x32 colour images of house numbers."""

import hashlib
import os
import shutil
import urllib.error
import urllib.request

import numpy as np

from keras_crl._optional import optional_import
from keras_crl.data.dataset import Dataset
from keras_crl.data.dataset import DatasetNotAvailable
from keras_crl.data.dataset import check_labels

BASE_URL = "http://ufldl.stanford.edu/housenumbers/"

# MD5 sums published for the Stanford files.
FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b69d9b0c6f"),
}

_DOWNLOAD_TIMEOUT_S = 60


class ChecksumMismatch(DatasetNotAvailable):
    """A data file does not have its published checksum."""


def default_data_dir():
    """Where SVHN is stored when no `data_dir` is given.

    Returns:
        `$KERAS_HOME/datasets/svhn`, by default `~/.keras/datasets/svhn`.

    Example:

    >>> default_data_dir().endswith(os.path.join("datasets", "svhn"))
    True
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "datasets", "svhn")


def file_checksum(path, algorithm="md5"):
    """Hex digest of a file, read in blocks.

    Args:
        path: The file.
        algorithm: Any `hashlib` algorithm name, e.g. `"md5"` or `"sha256"`.

    Returns:
        The hex digest string.

    Example:

    ```python
    file_checksum("train_32x32.mat")  # 'e26dedcc434d2e4c54c9b2d4a06d8373'
    ```
    """
    # A checksum against corruption, not a security measure; saying so keeps
    # MD5 usable on FIPS-restricted systems.
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_checksum(path, expected):
    """Raises `ChecksumMismatch` unless `path` has the checksum `expected`.

    The algorithm follows from the digest length: 32 hex digits for MD5, 64
    for SHA-256.

    Args:
        path: The file.
        expected: Expected hex digest.

    Raises:
        ChecksumMismatch: If the digests differ.

    Example:

    ```python
    verify_checksum("test_32x32.mat", "eb5a983be6a315427106f1b69d9b0c6f")
    ```
    """
    algorithms = {32: "md5", 64: "sha256"}
    if len(expected) not in algorithms:
        raise ValueError(f"Not an MD5 or SHA-256 hex digest: {expected!r}.")
    algorithm = algorithms[len(expected)]
    actual = file_checksum(path, algorithm)
    if actual != expected.lower():
        raise ChecksumMismatch(
            f"{path} has {algorithm} {actual}, expected {expected}: the file "
            "is incomplete or corrupted. Delete it and download it again."
        )


def _download(url, destination):
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        with open(destination, "wb") as f:
            shutil.copyfileobj(response, f, length=1 << 20)


def _missing_message(data_dir, url, error):
    names = " and ".join(name for name, _ in FILES.values())
    return (
        f"SVHN is not available: downloading {url} failed "
        f"({type(error).__name__}: {error}). There is probably no network "
        f"access. Download {names} from {BASE_URL} elsewhere and put them "
        f"into {data_dir} (or pass data_dir=... pointing to their folder)."
    )


def fetch_file(split, data_dir=None, download=True):
    """Returns the path of a verified SVHN file, downloading it if needed.

    A download goes to a `.part` file first and is renamed only once its
    checksum is right, so an interrupted download never looks complete.

    Args:
        split: `"train"` or `"test"`.
        data_dir: Folder of the files; defaults to `default_data_dir()`.
        download: Whether to download a missing file.

    Returns:
        The path of the file.

    Raises:
        DatasetNotAvailable: If the file is missing and cannot be downloaded.
        ChecksumMismatch: If the file has the wrong checksum.

    Example:

    ```python
    path = fetch_file("test", data_dir="/data/svhn")
    ```
    """
    if split not in FILES:
        raise ValueError(f"split must be one of {list(FILES)}, got {split!r}.")
    data_dir = os.path.expanduser(
        os.fspath(data_dir) if data_dir is not None else default_data_dir()
    )
    name, md5 = FILES[split]
    path = os.path.join(data_dir, name)
    url = BASE_URL + name
    if os.path.isfile(path):
        # A file someone placed by hand is never deleted: report instead.
        verify_checksum(path, md5)
        return path
    if not download:
        raise DatasetNotAvailable(
            f"SVHN file {path} is missing and download=False. Download "
            f"{url} and put it into {data_dir}."
        )
    os.makedirs(data_dir, exist_ok=True)
    partial = path + ".part"
    try:
        _download(url, partial)
    except (urllib.error.URLError, OSError, ValueError) as error:
        if os.path.exists(partial):
            os.remove(partial)
        raise DatasetNotAvailable(_missing_message(data_dir, url, error)) from error
    actual = file_checksum(partial, "md5")
    if actual != md5:
        os.remove(partial)
        raise ChecksumMismatch(
            f"The download of {url} has md5 {actual}, expected {md5}; it was "
            "discarded. Try again, or download the file elsewhere and put it "
            f"into {data_dir}."
        )
    os.replace(partial, path)
    return path


def _read_mat(path):
    scipy_io = optional_import("scipy.io", "data", "reading SVHN's .mat files")
    contents = scipy_io.loadmat(path)
    # Stored as (height, width, channel, image) in MATLAB order.
    x = np.ascontiguousarray(np.transpose(contents["X"], (3, 0, 1, 2)))
    y = np.asarray(contents["y"]).reshape(-1).astype(np.int64)
    # The digit 0 carries label 10 in the original files.
    y[y == 10] = 0
    return x.astype(np.uint8, copy=False), y


def load_svhn(*, data_dir=None, validation_split=0.1, seed=0, download=True):
    """Loads SVHN cropped digits: 73,257 train and 26,032 test 32x32 images.

    The files `train_32x32.mat` and `test_32x32.mat` are taken from
    `data_dir` (default `~/.keras/datasets/svhn`) or downloaded from the
    Stanford site, and checked against their published MD5 sums. Label 10
    (the digit 0) becomes 0. The validation set is a stratified, seeded part
    of the training file; mean and std are computed on the remaining
    training images.

    Args:
        data_dir: Folder of the `.mat` files.
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.
        download: Whether to download missing files.

    Returns:
        A `Dataset` named `"svhn"` with `uint8` images, augmented (when
        asked) without flips.

    Raises:
        DatasetNotAvailable: If a file is missing and cannot be downloaded.
        ChecksumMismatch: If a file has the wrong checksum.

    Example:

    ```python
    ds = load_svhn(data_dir="/data/svhn")
    ds.input_shape  # (32, 32, 3)
    ```
    """
    train_path = fetch_file("train", data_dir, download)
    test_path = fetch_file("test", data_dir, download)
    x_train, y_train = _read_mat(train_path)
    x_test, y_test = _read_mat(test_path)
    y_train = check_labels(y_train, 10, f"SVHN labels in {train_path}")
    y_test = check_labels(y_test, 10, f"SVHN labels in {test_path}")
    return Dataset.from_train_and_test(
        "svhn",
        x_train,
        y_train,
        x_test,
        y_test,
        num_classes=10,
        class_names=[str(digit) for digit in range(10)],
        validation_split=validation_split,
        seed=seed,
        # Digits are not mirror-symmetric: a flipped 2 is no 2.
        augmentation={"flip": False},
    )
