"""CUB-200-2011: 11,788 photographs of 200 bird species, read as published.

The archive `CUB_200_2011.tgz` extracts to `CUB_200_2011/` with the images in
`images/<class folder>/` and these lists, one line per image or class:
`images.txt` (`<image_id> <path under images/>`), `image_class_labels.txt`
(`<image_id> <class_id>`), `train_test_split.txt` (`<image_id>
<is_training_image>`), `classes.txt` (`<class_id> <name>`) and
`bounding_boxes.txt` (`<image_id> <x> <y> <width> <height>`). Ids are
1-based; class `k` gets label `k - 1`.
"""

import os

import numpy as np

from keras_crl.data.listed import find_root
from keras_crl.data.listed import load_listed
from keras_crl.data.listed import require_file

_HOW_TO_GET = (
    "Download CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ "
    "and extract it (it holds the folder CUB_200_2011/)."
)


def read_id_table(path, fields):
    """Reads a CUB list: `<id> <value> ...` per line, into `{id: values}`.

    Args:
        path: The list file.
        fields: Number of values after the id (the last one may hold spaces
            when `fields` is 1, as class names do not).

    Returns:
        A dict from the integer id to `(line, values)`: the 1-based line
        number and a tuple of `fields` strings, in file order.

    Raises:
        FileNotFoundError: If `path` is missing.
        ValueError: Naming `path` and the line, for a line without an
            integer id and `fields` values, or an id listed twice.

    Example:

    ```python
    paths = read_id_table("CUB_200_2011/images.txt", 1)
    paths[1]  # (1, ('001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg',))
    ```
    """
    require_file(path, "CUB-200-2011 list")
    table = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=fields)
            if len(parts) != fields + 1 or not parts[0].isdigit():
                raise ValueError(
                    f"{path} line {number}: expected '<id>' and {fields} value(s), got {line!r}."
                )
            key = int(parts[0])
            if key in table:
                raise ValueError(f"{path} line {number}: id {key} is listed twice.")
            table[key] = number, tuple(parts[1:])
    return table


def _entry(table, image_id, path):
    # Every image of images.txt must appear in each per-image list.
    if image_id not in table:
        raise ValueError(f"{path} has no line for image id {image_id} of images.txt.")
    return table[image_id][1]


def load_cub200(
    *,
    data_dir=None,
    validation_split=0.1,
    seed=0,
    image_size=224,
    crop_boxes=False,
    stream=False,
    **stream_options,
):
    """Loads CUB-200-2011 with its official split: 5,994 train, 5,794 test.

    `data_dir` is the extracted `CUB_200_2011/` folder or the folder holding
    it. Classes are in `classes.txt`'s order (class id `k` is label `k - 1`;
    the same order as the sorted class folders). The validation part is a
    stratified, seeded part of the official training images; the official
    test images are the test split. Images are resized to `image_size`
    (squashed, in memory; random-resized-cropped or center-cropped when
    streamed).

    Args:
        data_dir: The `CUB_200_2011/` folder or its parent.
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.
        image_size: Side of the square images, or `(height, width)`.
        crop_boxes: Cut each image to its box in `bounding_boxes.txt` first.
        stream: Decode batch by batch (a `StreamingFolder`) instead of into
            memory.
        **stream_options: With `stream`, more `load_listed` options
            (`workers`, `shard_index`, ...).

    Returns:
        A `Dataset` named `"cub200"`, or with `stream` a `StreamingFolder`.

    Raises:
        DatasetNotAvailable: If `data_dir` holds no `images.txt`.
        FileNotFoundError: Naming the file, for a missing list, or the list
            and line, for a listed image that is missing.
        ValueError: Naming the file and line or image id, for a malformed
            or incomplete list or a corrupt image.

    Example:

    ```python
    ds = load_cub200(data_dir="/data/CUB_200_2011", image_size=224)
    ds.num_classes  # 200
    ```
    """
    root = find_root(data_dir, "images.txt", ["", "CUB_200_2011"], "CUB-200-2011", _HOW_TO_GET)
    lists = {
        name: os.path.join(root, f"{name}.txt")
        for name in ("images", "image_class_labels", "train_test_split", "classes")
    }
    images = read_id_table(lists["images"], 1)
    classes = read_id_table(lists["classes"], 1)
    class_of = read_id_table(lists["image_class_labels"], 1)
    is_train = read_id_table(lists["train_test_split"], 1)
    box_list = os.path.join(root, "bounding_boxes.txt")
    box_of = read_id_table(box_list, 4) if crop_boxes else {}

    class_ids = sorted(classes)
    label_of = {class_id: label for label, class_id in enumerate(class_ids)}
    splits = {True: ([], []), False: ([], [])}
    boxes = {} if crop_boxes else None
    for image_id, (number, (relative,)) in images.items():
        path = os.path.join(root, "images", relative)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{lists['images']} line {number}: image {path} is missing.")
        (class_id,) = _entry(class_of, image_id, lists["image_class_labels"])
        if not class_id.isdigit() or int(class_id) not in label_of:
            raise ValueError(
                f"{lists['image_class_labels']}: image id {image_id} has class "
                f"{class_id!r}, which is not in {lists['classes']}."
            )
        (flag,) = _entry(is_train, image_id, lists["train_test_split"])
        if flag not in ("0", "1"):
            raise ValueError(
                f"{lists['train_test_split']}: image id {image_id} has "
                f"is_training_image {flag!r}; expected 0 or 1."
            )
        if crop_boxes:
            values = _entry(box_of, image_id, box_list)
            try:
                x, y, width, height = (float(v) for v in values)
            except ValueError as error:
                raise ValueError(f"{box_list}: image id {image_id}: {error}.") from error
            boxes[path] = (x, y, x + width, y + height)
        files, labels = splits[flag == "1"]
        files.append(path)
        labels.append(label_of[int(class_id)])
    (files, labels), (test_files, test_labels) = splits[True], splits[False]
    return load_listed(
        "cub200",
        files,
        np.asarray(labels, np.int32),
        test_files,
        np.asarray(test_labels, np.int32),
        class_names=[classes[k][1][0] for k in class_ids],
        validation_split=validation_split,
        seed=seed,
        image_size=image_size,
        boxes=boxes,
        stream=stream,
        **stream_options,
    )


def load_cub200_stream(**kwargs):
    """`load_cub200(stream=True, ...)`: the images decoded batch by batch.

    Example:

    ```python
    ds = load_cub200_stream(data_dir="/data/CUB_200_2011", workers=8)
    ```
    """
    return load_cub200(stream=True, **kwargs)
