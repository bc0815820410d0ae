"""ImageNet (ILSVRC2012) as published: always streamed, never decoded into memory.

`train/` holds one folder per class, named by its WordNet synset
(`n01440764/...JPEG`); `val/` holds the 50,000 validation images flat
(`ILSVRC2012_val_00000001.JPEG` ...). Their labels come from one of:

- `LOC_val_solution.csv` (Kaggle's release): `ImageId,PredictionString`,
  the synset the first word of `PredictionString`;
- `ILSVRC2012_validation_ground_truth.txt` (the devkit's): line `i` holds
  the 1-based ILSVRC2012_ID of `ILSVRC2012_val_<i, 8 digits>.JPEG`, mapped
  to its synset by the devkit's `meta.mat` (`synsets`: `ILSVRC2012_ID`,
  `WNID`).

Classes are the sorted synsets of `train/`, as the folder loaders sort them.
A `val/` already arranged in synset folders is read as such.
"""

import csv
import os

import numpy as np

from keras_crl.data.folder import IMAGE_EXTENSIONS
from keras_crl.data.folder import _is_hidden
from keras_crl.data.folder import scan_image_folder
from keras_crl.data.listed import find_root
from keras_crl.data.listed import load_listed
from keras_crl.data.listed import read_mat
from keras_crl.data.listed import require_file

CSV_HEADER = ["ImageId", "PredictionString"]
_HOW_TO_GET = (
    "Put ILSVRC2012's train/ (one folder per synset) and val/ (flat) into one folder, "
    "with LOC_val_solution.csv or the devkit's ILSVRC2012_validation_ground_truth.txt "
    "and meta.mat (Kaggle's ILSVRC/Data/CLS-LOC/ layout works too)."
)
# Where the ground truth may lie, under the folder holding train/ and val/
# or under data_dir (Kaggle's CSV is at its top, above ILSVRC/).
_GROUND_TRUTH_DIRS = ("", "data", os.path.join("ILSVRC2012_devkit_t12", "data"))


def _find(root, data_dir, name):
    for base in (root, data_dir):
        for sub in _GROUND_TRUTH_DIRS:
            path = os.path.normpath(os.path.join(base, sub, name))
            if os.path.isfile(path):
                return path
    return None


def read_solution_csv(path):
    """The validation labels of Kaggle's `LOC_val_solution.csv`.

    Args:
        path: The CSV file.

    Returns:
        A list of `(line, image id, synset)` tuples.

    Raises:
        ValueError: Naming `path` and the line, for a wrong header or a row
            without a synset.

    Example:

    ```python
    rows = read_solution_csv("LOC_val_solution.csv")
    rows[0]  # (2, 'ILSVRC2012_val_00008726', 'n02119789')
    ```
    """
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != CSV_HEADER:
            raise ValueError(f"{path} line 1: expected the header {','.join(CSV_HEADER)}.")
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            words = row[1].split() if len(row) == 2 else []
            if not words:
                raise ValueError(f"{path} line {number}: expected 'ImageId,synset ...', got {row}.")
            rows.append((number, row[0].strip(), words[0]))
    return rows


def read_devkit_ground_truth(path, meta):
    """The validation labels of the devkit's ground truth and `meta.mat`.

    Args:
        path: `ILSVRC2012_validation_ground_truth.txt`.
        meta: The devkit's `meta.mat`.

    Returns:
        A list of `(line, image id, synset)` tuples.

    Raises:
        ValueError: Naming the file and line, for an unreadable `meta.mat`
            or an ID it does not hold.

    Example:

    ```python
    rows = read_devkit_ground_truth(
        "ILSVRC2012_validation_ground_truth.txt", "meta.mat")
    rows[0]  # (1, 'ILSVRC2012_val_00000001', 'n01751748')
    ```
    """
    synsets = np.atleast_1d(read_mat(meta, "synsets"))
    if not {"ILSVRC2012_ID", "WNID"} <= set(synsets.dtype.names or ()):
        raise ValueError(f"{meta}: the synsets lack the fields ILSVRC2012_ID and WNID.")
    wnid_of = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            text = line.strip()
            if not text.isdigit() or int(text) not in wnid_of:
                raise ValueError(
                    f"{path} line {number}: {text!r} is not an ILSVRC2012_ID of {meta}."
                )
            rows.append((number, f"ILSVRC2012_val_{number:08d}", wnid_of[int(text)]))
    return rows


def _val_from_ground_truth(val_dir, truth, rows, label_of):
    # Every listed image must exist, and every image must be listed: a test
    # set with holes would give a score on some other set.
    present = {
        entry.name
        for entry in os.scandir(val_dir)
        if entry.is_file()
        and not _is_hidden(entry.name)
        and entry.name.lower().endswith(IMAGE_EXTENSIONS)
    }
    files, labels, listed = [], [], set()
    for number, image_id, synset in rows:
        name = f"{image_id}.JPEG"
        if name not in present:
            raise FileNotFoundError(
                f"{truth} line {number}: image {os.path.join(val_dir, name)} is missing."
            )
        if synset not in label_of:
            raise ValueError(
                f"{truth} line {number}: synset {synset} of {image_id} is not a class "
                f"folder of train/ ({len(label_of)} classes)."
            )
        files.append(os.path.join(val_dir, name))
        labels.append(label_of[synset])
        listed.add(name)
    unlisted = sorted(present - listed)
    if unlisted:
        raise ValueError(
            f"{os.path.join(val_dir, unlisted[0])} (and {len(unlisted) - 1} more) has no "
            f"label in {truth}."
        )
    order = np.argsort(files, kind="stable")
    return [files[i] for i in order], np.asarray(labels, np.int32)[order]


def load_imagenet(*, data_dir=None, validation_split=0.1, seed=0, image_size=224, **stream_options):
    """Lists ILSVRC2012 for streaming: 1,281,167 train and 50,000 val images.

    Nothing is decoded here: the result's `pipeline()` decodes batch by
    batch (random resized crop and flip for training, resize and center crop
    for evaluation). The official validation images are the test split;
    the validation part is a stratified, seeded part of `train/`.

    Args:
        data_dir: The folder holding `train/` and `val/` (or Kaggle's
            `ILSVRC/Data/CLS-LOC/`) and the ground truth.
        validation_split: Fraction of the training images held out (0.01
            holds out 12,811 images).
        seed: Seed of the validation split.
        image_size: Side of the square images.
        **stream_options: More `load_listed` options (`workers`,
            `use_multiprocessing`, `shard_index`, `shard_count`, ...).

    Returns:
        A `StreamingFolder` named `"imagenet"`; its classes are the sorted
        synsets.

    Raises:
        DatasetNotAvailable: If `data_dir` holds no `train/`.
        FileNotFoundError: For a missing `val/` or ground truth, or naming
            the ground truth's line, for a listed image that is missing.
        ValueError: Naming the file and line, for a malformed ground truth,
            an ID not in `meta.mat`, or a synset that is not in `train/`.

    Example:

    ```python
    ds = load_imagenet(data_dir="/data/imagenet", workers=16)
    train = ds.pipeline("train", 256, augment=True, shuffle=True)
    ```
    """
    if "stream" in stream_options and not stream_options.pop("stream"):
        raise ValueError("ImageNet is always streamed: it does not fit into memory.")
    root = find_root(
        data_dir, "train", ["", os.path.join("ILSVRC", "Data", "CLS-LOC")], "ImageNet", _HOW_TO_GET
    )
    data_dir = os.path.expanduser(os.fspath(data_dir))
    class_names, files, labels = scan_image_folder(os.path.join(root, "train"))
    val_dir = os.path.join(root, "val")
    if not os.path.isdir(val_dir):
        raise FileNotFoundError(f"ImageNet's validation folder {val_dir} is missing.")
    with os.scandir(val_dir) as entries:  # any() stops early: close the listing
        in_folders = any(entry.is_dir() and not _is_hidden(entry.name) for entry in entries)
    if in_folders:
        # Already arranged in synset folders, as many preparation scripts do.
        _, test_files, test_labels = scan_image_folder(val_dir, class_names)
    else:
        label_of = {synset: label for label, synset in enumerate(class_names)}
        solution = _find(root, data_dir, "LOC_val_solution.csv")
        truth = _find(root, data_dir, "ILSVRC2012_validation_ground_truth.txt")
        if solution is not None:
            rows = read_solution_csv(solution)
        elif truth is not None:
            meta = _find(root, data_dir, "meta.mat") or os.path.join(
                os.path.dirname(truth), "meta.mat"
            )
            rows = read_devkit_ground_truth(truth, require_file(meta, "The devkit's"))
            solution = truth
        else:
            raise FileNotFoundError(
                f"No ground truth for {val_dir}: put LOC_val_solution.csv or the devkit's "
                f"ILSVRC2012_validation_ground_truth.txt and meta.mat into {data_dir}."
            )
        test_files, test_labels = _val_from_ground_truth(val_dir, solution, rows, label_of)
    return load_listed(
        "imagenet",
        files,
        labels,
        test_files,
        test_labels,
        class_names=class_names,
        validation_split=validation_split,
        seed=seed,
        image_size=image_size,
        stream=True,
        **stream_options,
    )
