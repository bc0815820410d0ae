"""Image-folder data sets: one sub-folder of images per class.

This is the layout of CUB-200-2011 (`images/`), Stanford Cars, Adience or
ImageNet once arranged by class. All images are decoded into memory, once, as
`uint8`, so pass an `image_size` that keeps the array affordable.
"""

import math
import os

import numpy as np

from keras_crl._optional import optional_import
from keras_crl.data.dataset import Dataset
from keras_crl.data.dataset import channel_stats
from keras_crl.data.dataset import check_seed
from keras_crl.data.dataset import stratified_split
from keras_crl.data.dataset import validation_indices

IMAGE_EXTENSIONS = (
    ".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff",
    ".webp",
)  # fmt: skip

_MODES = {"rgb": ("RGB", 3), "grayscale": ("L", 1)}


def _is_hidden(name):
    # Finder, editors and checkouts leave .DS_Store, ._x.jpg and the like.
    return name.startswith(".")


def scan_image_folder(path, class_names=None):
    """Lists the images of a class-per-folder tree, checking its structure.

    Images may sit anywhere below their class folder. Hidden files and files
    without an image extension are skipped.

    Args:
        path: The root folder; each direct sub-folder is a class.
        class_names: The classes to map folders onto, e.g. those of the
            training folder when scanning a test folder. Defaults to the
            sorted sub-folder names of `path`.

    Returns:
        Tuple `(class_names, files, labels)`: the class names, the sorted
        image paths and their `int32` labels.

    Raises:
        ValueError: If `path` is missing or not a folder, has no class
            folders, a class folder holds no image, or a folder is not one
            of `class_names` (its label would be out of the class range).

    Example:

    ```python
    names, files, labels = scan_image_folder("/data/cub/images")
    ```
    """
    path = os.path.expanduser(os.fspath(path))
    if not os.path.exists(path):
        raise ValueError(f"Image folder {path} does not exist.")
    if not os.path.isdir(path):
        raise ValueError(f"Image folder {path} is not a directory.")
    folders = sorted(
        entry.name for entry in os.scandir(path) if entry.is_dir() and not _is_hidden(entry.name)
    )
    if not folders:
        raise ValueError(
            f"Image folder {path} has no class sub-folders; expected one "
            "sub-folder of images per class."
        )
    if class_names is None:
        class_names = folders
    else:
        class_names = list(class_names)
        unknown = [f for f in folders if f not in class_names]
        if unknown:
            raise ValueError(
                f"Class folder {os.path.join(path, unknown[0])} is not one of "
                f"the {len(class_names)} training classes, so its label "
                "would be out of the class range."
            )
    label_of = {name: label for label, name in enumerate(class_names)}
    files, labels = [], []
    for folder in folders:
        folder_path = os.path.join(path, folder)
        found = []
        for root, dirs, names in os.walk(folder_path):
            dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
            found.extend(
                os.path.join(root, name)
                for name in sorted(names)
                if not _is_hidden(name) and name.lower().endswith(IMAGE_EXTENSIONS)
            )
        if not found:
            raise ValueError(
                f"Class folder {folder_path} contains no images (extensions "
                f"{', '.join(IMAGE_EXTENSIONS)})."
            )
        files.extend(found)
        labels.extend([label_of[folder]] * len(found))
    return class_names, files, np.asarray(labels, dtype=np.int32)


def check_images(files, same_size=True):
    """Checks that every file is a readable image, without decoding pixels.

    Args:
        files: Image paths.
        same_size: Whether all images must have the same size (needed when
            they are not resized).

    Returns:
        The size `(width, height)` of the first image.

    Raises:
        ValueError: Naming the first file that PIL cannot identify or that
            fails `verify()`, or whose size differs from the first image's
            when `same_size` is true.

    Example:

    ```python
    check_images(files, same_size=False)
    ```
    """
    Image = optional_import("PIL.Image", "data", "reading images")

    reference = None
    for file in files:
        try:
            with Image.open(file) as image:
                size = image.size
                image.verify()
        except Exception as error:  # PIL raises many types here
            raise ValueError(
                f"Corrupt or unreadable image {file}: {type(error).__name__}: {error}"
            ) from error
        if reference is None:
            reference = (file, size)
        elif same_size and size != reference[1]:
            raise ValueError(
                f"Image {file} is {size[0]}x{size[1]} but {reference[0]} is "
                f"{reference[1][0]}x{reference[1][1]} (width x height); pass "
                "image_size=(height, width) to resize all images."
            )
    return reference[1] if reference else None


def read_image(file, mode="RGB"):
    """Decodes one image file fully into a PIL image of the given mode.

    Args:
        file: Path of the image.
        mode: PIL mode to convert to, e.g. `"RGB"` or `"L"`.

    Returns:
        A loaded `PIL.Image.Image`, detached from the file.

    Raises:
        ValueError: Naming `file`, if it cannot be opened or decoded (a
            corrupt or truncated file).

    Example:

    ```python
    image = read_image("/data/cub/images/001/a.jpg")
    ```
    """
    Image = optional_import("PIL.Image", "data", "reading images")

    try:
        with Image.open(file) as image:
            # verify() only checks structure; truncated pixel data shows up
            # here, when the image is actually decoded.
            image.load()
            # A converted copy (also when the mode is already right): closing
            # the file releases the decoded pixels of `image` itself.
            return image.convert(mode)
    except Exception as error:  # PIL raises many types here
        raise ValueError(
            f"Corrupt or truncated image {file}: {type(error).__name__}: {error}"
        ) from error


def crop_to_box(image, box, file):
    """Cuts a PIL image to a bounding box, clipped to the image.

    Args:
        image: A PIL image.
        box: `(left, top, right, bottom)` in pixels; the right and bottom
            edges are exclusive, as in PIL.
        file: The image's path, for the error message.

    Returns:
        The cropped PIL image.

    Raises:
        ValueError: Naming `file` and the box, if nothing of the box lies
            inside the image.

    Example:

    >>> from PIL import Image
    >>> crop_to_box(Image.new("RGB", (10, 8)), (2, 1, 20, 5), "a.jpg").size
    (8, 4)
    """
    width, height = image.size
    # Annotations are floats and may run past the border by a pixel or two.
    left, top = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    right, bottom = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    if right <= left or bottom <= top:
        raise ValueError(
            f"Bounding box {tuple(box)} of {file} lies outside its {width}x{height} image."
        )
    return image.crop((left, top, right, bottom))


def _decode(files, image_size, color_mode, boxes=None):
    Image = optional_import("PIL.Image", "data", "reading images")

    mode, channels = _MODES[color_mode]
    height, width = image_size
    out = np.empty((len(files), height, width, channels), dtype=np.uint8)
    for i, file in enumerate(files):
        image = read_image(file, mode)
        if boxes is not None:
            image = crop_to_box(image, boxes[file], file)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        out[i] = np.asarray(image, dtype=np.uint8).reshape(height, width, channels)
    return out


def load_image_folder(
    path,
    image_size=None,
    *,
    validation_split=0.1,
    seed=0,
    test_dir=None,
    test_split=0.2,
    test_seed=0,
    color_mode="rgb",
    name=None,
):
    """Loads a class-per-folder image tree into memory as a `Dataset`.

    Everything is validated before any image is decoded: the folders exist,
    no class folder is empty, every image opens and passes PIL's `verify()`,
    and, without `image_size`, all images share one size. Images are then
    decoded (which also catches truncated files), converted to RGB or
    grayscale and resized to `image_size` with bilinear filtering.

    Classes are the sorted sub-folder names of `path`. With `test_dir` (same
    layout, a subset of the classes) it is the test set; otherwise a
    stratified `test_split` of `path` is, drawn with `test_seed` so that it
    stays fixed across `seed`s. The validation set is a stratified, seeded
    part of the remaining training images; mean and std come from the
    training images only.

    Args:
        path: Root of the training images, one sub-folder per class.
        image_size: `(height, width)` to resize to, an integer for square
            images, or None to keep the (then required common) size.
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.
        test_dir: Optional root of the test images.
        test_split: Fraction of `path` used as test set when `test_dir` is
            None; `0` gives an empty test set.
        test_seed: Seed of that test split.
        color_mode: `"rgb"` or `"grayscale"`.
        name: Name of the `Dataset`; defaults to the folder name.

    Returns:
        A `Dataset` with `uint8` images.

    Raises:
        ValueError: Naming the offending folder or file, for a missing
            folder, an empty class folder, a corrupt or truncated image,
            mismatched sizes without `image_size`, or a test class that is
            not a training class.

    Example:

    ```python
    ds = load_image_folder("/data/cub/images", image_size=(64, 64),
                           validation_split=0.1, seed=0)
    ```
    """
    if color_mode not in _MODES:
        raise ValueError(f"color_mode must be one of {list(_MODES)}, got {color_mode!r}.")
    if image_size is not None:
        if isinstance(image_size, (int, np.integer)):
            image_size = (image_size, image_size)
        image_size = tuple(int(s) for s in image_size)
        if len(image_size) != 2 or min(image_size) < 1:
            raise ValueError(f"image_size must be (height, width), got {image_size}.")
    if not 0.0 <= test_split < 1.0:
        raise ValueError(f"test_split must be in [0, 1), got {test_split}.")
    check_seed(seed)

    class_names, files, labels = scan_image_folder(path)
    test_files, test_labels = [], np.zeros(0, np.int32)
    if test_dir is not None:
        _, test_files, test_labels = scan_image_folder(test_dir, class_names)
    size = check_images(files + test_files, same_size=image_size is None)
    if image_size is None:
        image_size = (size[1], size[0])

    if test_dir is None:
        rest, test = stratified_split(
            labels, test_split, np.random.default_rng(check_seed(test_seed))
        )
        test_files, test_labels = [files[i] for i in test], labels[test]
        files, labels = [files[i] for i in rest], labels[rest]
    if name is None:
        name = os.path.basename(os.path.normpath(os.fspath(path)))
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
        color_mode=color_mode,
    )


def decoded_dataset(
    name,
    files,
    labels,
    test_files,
    test_labels,
    *,
    class_names,
    validation_split,
    seed,
    image_size,
    color_mode="rgb",
    boxes=None,
):
    """A `Dataset` decoded from lists of training and test files.

    The files are decoded once, in split order (training, validation, test),
    into one `uint8` array, and each split is a view of it: no split is a
    copy, so the pixels are held once. Mean and std come from the training
    part, a few images at a time (`channel_stats`).

    Args:
        name: The data set's name.
        files, labels: The training images, validation part included, and
            their labels.
        test_files, test_labels: The test images and their labels.
        class_names: One name per class.
        validation_split: Fraction of `files` held out for validation
            (stratified, drawn with `seed`, as `split_validation`).
        seed: Seed of the validation split.
        image_size: `(height, width)` of the decoded images.
        color_mode: `"rgb"` or `"grayscale"`.
        boxes: Optional mapping from a file to the box its image is cut to.

    Returns:
        A `Dataset` with `uint8` images.

    Example:

    ```python
    ds = decoded_dataset("birds", files, labels, test_files, test_labels,
                         class_names=names, validation_split=0.1, seed=0,
                         image_size=(64, 64))
    ```
    """
    labels = np.asarray(labels)
    keep, hold = validation_indices(labels, validation_split, seed)
    order = [files[i] for i in keep] + [files[i] for i in hold] + list(test_files)
    x = _decode(order, image_size, color_mode, boxes)
    x_train, x_val, x_test = np.split(x, [len(keep), len(keep) + len(hold)])
    mean, std = channel_stats(x_train)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=labels[keep],
        x_val=x_val,
        y_val=labels[hold],
        x_test=x_test,
        y_test=test_labels,
        num_classes=len(class_names),
        mean=mean,
        std=std,
        class_names=class_names,
    )
