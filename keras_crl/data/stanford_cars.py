"""Stanford Cars: 16,185 photographs of 196 car models, read as published.

The devkit layout: `cars_train/` and `cars_test/` (the images),
`devkit/cars_meta.mat` (`class_names`, a cell array of 196 names),
`devkit/cars_train_annos.mat` and `cars_test_annos_withlabels.mat` (released
after the devkit; at the top or in `devkit/`), each a struct array
`annotations` with the fields `bbox_x1`, `bbox_y1`, `bbox_x2`, `bbox_y2`,
`class` (1-based) and `fname`. Boxes are MATLAB's 1-based, inclusive pixel
indices.
"""

import os

import numpy as np

from keras_crl.data.listed import find_root
from keras_crl.data.listed import load_listed
from keras_crl.data.listed import read_mat

_HOW_TO_GET = (
    "Get cars_train.tgz, cars_test.tgz, car_devkit.tgz and "
    "cars_test_annos_withlabels.mat (Stanford's original release, or a mirror of it), "
    "and extract them into one folder."
)
_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")


def read_annotations(path, image_dir, num_classes):
    """The images, labels and boxes of a devkit `annotations` file.

    Args:
        path: `cars_train_annos.mat` or `cars_test_annos_withlabels.mat`.
        image_dir: The folder of the images it names.
        num_classes: Number of classes in `cars_meta.mat`.

    Returns:
        Tuple `(files, labels, boxes)`: image paths, 0-based `int32` labels
        and a dict from path to its `(left, top, right, bottom)` box.

    Raises:
        FileNotFoundError: Naming `path` and the entry, for a listed image
            that is missing.
        ValueError: Naming `path` (and the entry), for a missing field, a
            class outside `1..num_classes` or a bad box.

    Example:

    ```python
    files, labels, boxes = read_annotations(
        "devkit/cars_train_annos.mat", "cars_train", 196)
    ```
    """
    annotations = np.atleast_1d(read_mat(path, "annotations"))
    names = annotations.dtype.names or ()
    missing = [field for field in _FIELDS if field not in names]
    if missing:
        raise ValueError(
            f"{path}: the annotations lack the field(s) {', '.join(missing)} "
            "(the test annotations must be cars_test_annos_withlabels.mat)."
        )
    files, labels, boxes = [], [], {}
    for entry, record in enumerate(annotations, start=1):
        where = f"{path} entry {entry} ({record['fname']})"
        file = os.path.join(image_dir, str(record["fname"]))
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{where}: image {file} is missing.")
        try:
            label = int(record["class"])
            x1, y1, x2, y2 = (float(record[f]) for f in _FIELDS[:4])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: {error}.") from error
        if not 1 <= label <= num_classes:
            raise ValueError(f"{where}: class {label} is outside 1..{num_classes}.")
        files.append(file)
        labels.append(label - 1)
        # Pixel x1 (1-based) covers [x1 - 1, x1) in PIL's coordinates.
        boxes[file] = (x1 - 1, y1 - 1, x2, y2)
    return files, np.asarray(labels, np.int32), boxes


def load_stanford_cars(
    *,
    data_dir=None,
    validation_split=0.1,
    seed=0,
    image_size=224,
    crop_boxes=False,
    stream=False,
    **stream_options,
):
    """Loads Stanford Cars with its official split: 8,144 train, 8,041 test.

    Classes are in `cars_meta.mat`'s order (class `k` is label `k - 1`). The
    validation part is a stratified, seeded part of the official training
    images; the official test images are the test split.

    Args:
        data_dir: The folder with `cars_train/`, `cars_test/` and `devkit/`.
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.
        image_size: Side of the square images, or `(height, width)`.
        crop_boxes: Cut each image to its annotated box first.
        stream: Decode batch by batch (a `StreamingFolder`) instead of into
            memory.
        **stream_options: With `stream`, more `load_listed` options.

    Returns:
        A `Dataset` named `"stanford_cars"`, or with `stream` a
        `StreamingFolder`.

    Raises:
        DatasetNotAvailable: If `data_dir` has no `devkit/` folder.
        FileNotFoundError: Naming the file (and entry), for a missing
            `.mat` file or listed image.
        ValueError: Naming the file and entry, for a corrupt `.mat`, a
            missing field, a class out of range or a corrupt image.

    Example:

    ```python
    ds = load_stanford_cars(data_dir="/data/stanford_cars", crop_boxes=True)
    ds.num_classes  # 196
    ```
    """
    root = find_root(data_dir, "devkit", ["", "stanford_cars"], "Stanford Cars", _HOW_TO_GET)
    meta = os.path.join(root, "devkit", "cars_meta.mat")
    class_names = [str(name) for name in np.atleast_1d(read_mat(meta, "class_names"))]
    # Released after the devkit, so found beside it or moved into it.
    places = [
        os.path.join(root, *where, "cars_test_annos_withlabels.mat") for where in ((), ("devkit",))
    ]
    test_annos = next((path for path in places if os.path.isfile(path)), None)
    if test_annos is None:
        raise FileNotFoundError(
            "The labelled test annotations are missing: neither "
            f"{places[0]} nor {places[1]} exists."
        )
    files, labels, boxes = read_annotations(
        os.path.join(root, "devkit", "cars_train_annos.mat"),
        os.path.join(root, "cars_train"),
        len(class_names),
    )
    test_files, test_labels, test_boxes = read_annotations(
        test_annos, os.path.join(root, "cars_test"), len(class_names)
    )
    return load_listed(
        "stanford_cars",
        files,
        labels,
        test_files,
        test_labels,
        class_names=class_names,
        validation_split=validation_split,
        seed=seed,
        image_size=image_size,
        boxes={**boxes, **test_boxes} if crop_boxes else None,
        stream=stream,
        **stream_options,
    )


def load_stanford_cars_stream(**kwargs):
    """`load_stanford_cars(stream=True, ...)`: decoded batch by batch.

    Example:

    ```python
    ds = load_stanford_cars_stream(data_dir="/data/stanford_cars", workers=8)
    ```
    """
    return load_stanford_cars(stream=True, **kwargs)
