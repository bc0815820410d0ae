"""The `Dataset` every loader returns, and how its splits and statistics are made."""

import dataclasses

import numpy as np


class DatasetNotAvailable(RuntimeError):
    """Raised when a data set can be neither found locally nor downloaded.

    The message says where the files are expected, so that they can be put
    there by hand on a machine without network access.
    """


@dataclasses.dataclass
class Dataset:
    """An in-memory image classification data set with train/val/test splits.

    Args:
        name: Name of the data set, e.g. `"cifar10"`.
        x_train: Training images, NHWC, `uint8` in `[0, 255]` or `float32`
            in `[0, 1]`.
        y_train: Training labels, `int32`, shape `(N,)`.
        x_val: Validation images, held out of the training data (never
            taken from the test set). May hold zero images.
        y_val: Validation labels.
        x_test: Test images.
        y_test: Test labels.
        num_classes: Number of classes; every label lies in
            `[0, num_classes)`.
        mean: Per-channel mean on the `[0, 1]` scale.
        std: Per-channel standard deviation on the `[0, 1]` scale.
        class_names: Optional list of `num_classes` human-readable names.
        augmentation: The padded crop and flip that suit these images, as
            `BatchPipeline` arguments (`pad`, `flip`) where they differ from
            its defaults; `pipeline()` uses them.

    Raises:
        ValueError: If shapes disagree or a label is outside
            `[0, num_classes)`, whichever loader produced the arrays.

    Example:

    ```python
    ds = load_dataset("synthetic", num_samples=200)
    ds.input_shape  # (32, 32, 3)
    ```
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: tuple
    std: tuple
    class_names: list | None = None
    augmentation: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.num_classes = int(self.num_classes)
        if self.num_classes < 1:
            raise ValueError(
                f"Dataset '{self.name}': num_classes must be >= 1, got {self.num_classes}."
            )
        image_shape = None
        for split in ("train", "val", "test"):
            x = np.asarray(getattr(self, f"x_{split}"))
            y = check_labels(
                getattr(self, f"y_{split}"),
                self.num_classes,
                where=f"Dataset '{self.name}', y_{split}",
            )
            if x.ndim != 4:
                raise ValueError(
                    f"Dataset '{self.name}': x_{split} must be NHWC (4-D), got shape {x.shape}."
                )
            if x.dtype not in (np.uint8, np.float32):
                raise ValueError(
                    f"Dataset '{self.name}': x_{split} must be uint8 or float32, got {x.dtype}."
                )
            if len(x) != len(y):
                raise ValueError(
                    f"Dataset '{self.name}': x_{split} has {len(x)} images "
                    f"but y_{split} has {len(y)} labels."
                )
            if image_shape is None:
                image_shape = x.shape[1:]
            elif x.shape[1:] != image_shape:
                raise ValueError(
                    f"Dataset '{self.name}': x_{split} images have shape "
                    f"{x.shape[1:]}, x_train images have {image_shape}."
                )
            setattr(self, f"x_{split}", x)
            setattr(self, f"y_{split}", y)
        channels = image_shape[-1]
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"Dataset '{self.name}': mean and std need one value per "
                f"channel ({channels}), got {self.mean} and {self.std}."
            )
        if self.class_names is not None:
            self.class_names = list(self.class_names)
            if len(self.class_names) != self.num_classes:
                raise ValueError(
                    f"Dataset '{self.name}': {len(self.class_names)} class "
                    f"names for {self.num_classes} classes."
                )
        self.augmentation = dict(self.augmentation)
        unknown = set(self.augmentation) - {"pad", "flip"}
        if unknown:
            raise ValueError(
                f"Dataset '{self.name}': augmentation takes 'pad' and 'flip', "
                f"got {sorted(unknown)}."
            )

    @classmethod
    def from_train_and_test(
        cls,
        name,
        x,
        y,
        x_test,
        y_test,
        *,
        num_classes,
        class_names,
        validation_split,
        seed,
        mean=None,
        std=None,
        augmentation=None,
    ):
        """A `Dataset` from training and test data: how every loader builds one.

        Holds a seeded, stratified validation part out of `(x, y)`
        (`split_validation`) and, unless `mean` and `std` are given (the
        published statistics of CIFAR), computes them on the training part.

        Args:
            name: The data set's name.
            x, y: Training images (NHWC) and integer labels, validation included.
            x_test, y_test: The test split.
            num_classes: Number of classes.
            class_names: One name per class.
            validation_split: Fraction of `(x, y)` held out for validation.
            seed: Non-negative integer seed of the validation split.
            mean, std: Per-channel statistics on the `[0, 1]` scale, or
                `None` to compute them from the training part.
            augmentation: The data set's own `pad` and `flip`, if any.

        Returns:
            A `Dataset`.
        """
        x_train, y_train, x_val, y_val = split_validation(x, y, validation_split, seed)
        if mean is None or std is None:
            mean, std = channel_stats(x_train)
        return cls(
            name=name,
            x_train=x_train,
            y_train=y_train,
            x_val=x_val,
            y_val=y_val,
            x_test=x_test,
            y_test=y_test,
            num_classes=num_classes,
            mean=mean,
            std=std,
            class_names=class_names,
            augmentation=augmentation or {},
        )

    @property
    def input_shape(self):
        """The shape of one image, `(H, W, C)`."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    def pipeline(self, split, batch_size, *, limit=None, **options):
        """The `BatchPipeline` of `"train"`, `"val"` or `"test"`.

        The same call as `StreamingFolder.pipeline`, so that training takes
        either source. The pipeline normalizes with this data set's `mean`
        and `std`, checks labels against `num_classes` and, with
        `augment=True`, crops and flips as `augmentation` says.

        Args:
            split: Which split.
            batch_size: Global batch size.
            limit: Use only the first `limit` images of the split.
            **options: More `BatchPipeline` arguments (`augment`, `shuffle`,
                `seed`, `initial_epoch`, `data_format`, `drop_remainder`,
                `shard_index`, `shard_count`, ...); they override this data
                set's.

        Returns:
            A `BatchPipeline`.

        Example:

        >>> ds = keras_crl.data.load_dataset("digits")
        >>> train = ds.pipeline("train", 64, augment=True, shuffle=True, seed=0)
        >>> len(train), train.pad, train.flip
        (21, 1, False)
        """
        # pipeline.py checks labels with this module's check_labels.
        from keras_crl.data.pipeline import BatchPipeline

        check_split(split)
        options = {
            "mean": self.mean,
            "std": self.std,
            "num_classes": self.num_classes,
            **self.augmentation,
            **options,
        }
        x = getattr(self, f"x_{split}")[:limit]
        y = getattr(self, f"y_{split}")[:limit]
        return BatchPipeline(x, y, batch_size, **options)


SPLITS = ("train", "val", "test")


def check_split(split):
    """Returns `split` if it names a split of a data set, else raises.

    Args:
        split: `"train"`, `"val"` or `"test"`.

    Returns:
        `split`.

    Raises:
        ValueError: Naming the valid splits.

    Example:

    >>> check_split("val")
    'val'
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    return split


def check_labels(y, num_classes, where="labels"):
    """Returns `y` as a flat `int32` array after checking its range.

    Args:
        y: Integer labels, shape `(N,)` or `(N, 1)`.
        num_classes: Labels must lie in `[0, num_classes)`.
        where: Text naming the source of the labels, for the error message.

    Returns:
        The labels as an `int32` array of shape `(N,)`.

    Raises:
        ValueError: If `y` is not integral, not 1-D after flattening a
            trailing unit axis, or holds a label out of range.

    Example:

    >>> check_labels(np.array([[0], [2]]), 3)
    array([0, 2], dtype=int32)
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{where}: expected shape (N,), got {y.shape}.")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"{where}: labels must be integers.")
    if y.size:
        low, high = y.min(), y.max()
        if low < 0 or high >= num_classes:
            bad = y[(y < 0) | (y >= num_classes)]
            raise ValueError(
                f"{where}: label {bad[0]} is outside the class range [0, {num_classes})."
            )
    return y.astype(np.int32)


def stratified_split(y, fraction, rng):
    """Splits indices into a kept part and a held-out part, class by class.

    The held-out part has `round(fraction * len(y))` indices in total; the
    per-class counts are proportional to the class sizes (largest remainder
    rounding), so small splits keep the class balance of the data.

    Args:
        y: Integer labels, shape `(N,)`.
        fraction: Fraction of the indices to hold out, in `[0, 1)`.
        rng: A `np.random.Generator`; the split depends only on it and `y`.

    Returns:
        Tuple `(kept, held_out)` of sorted `int64` index arrays.

    Example:

    ```python
    keep, hold = stratified_split(y, 0.1, np.random.default_rng(0))
    ```
    """
    y = np.asarray(y)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"A split fraction must be in [0, 1), got {fraction}.")
    total = int(round(fraction * len(y)))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (total / max(len(y), 1))
    per_class = np.floor(exact).astype(np.int64)
    # Hand the rounding leftovers to the classes with the largest remainders;
    # the stable sort keeps ties in class order, so the split is reproducible.
    leftover = total - int(per_class.sum())
    if leftover > 0:
        order = np.argsort(-(exact - per_class), kind="stable")
        per_class[order[:leftover]] += 1
    held = []
    for cls, n_hold in zip(classes, per_class):
        members = np.flatnonzero(y == cls)
        held.append(rng.permutation(members)[:n_hold])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask), held


def channel_stats(x, chunk_bytes=8 * 2**20):
    """Per-channel mean and standard deviation on the `[0, 1]` scale.

    Works in float64, a few images at a time in one reused buffer of at
    most `chunk_bytes` (one image if an image is larger), so memory beyond
    `x` itself stays that small whatever the size of `x`: a `uint8` set is
    never converted to float as a whole.

    Args:
        x: Images, NHWC, `uint8` (`[0, 255]`) or float (`[0, 1]`).
        chunk_bytes: Size of the float64 working buffer, in bytes.

    Returns:
        Tuple `(mean, std)` of tuples of Python floats, one per channel.

    Example:

    >>> channel_stats(np.zeros((2, 4, 4, 3), np.uint8))
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    """
    x = np.asarray(x)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"Expected a non-empty NHWC array, got {x.shape}.")
    scale = 1.0 / 255.0 if x.dtype == np.uint8 else 1.0
    channels = x.shape[-1]
    rows = min(len(x), max(1, int(chunk_bytes) // (8 * x[0].size)))
    buffer = np.empty((rows, *x.shape[1:]), np.float64)

    def chunks():
        for start in range(0, len(x), rows):
            part = x[start : start + rows]
            chunk = buffer[: len(part)]
            np.multiply(part, scale, out=chunk, dtype=np.float64)
            yield chunk.reshape(-1, channels)

    count = x.size // channels
    # Mean first, then squared deviations: one pass over sum and sum of
    # squares loses precision when the variance is small next to the mean.
    mean = sum(chunk.sum(axis=0) for chunk in chunks()) / count
    squares = np.zeros(channels)
    for chunk in chunks():
        chunk -= mean
        np.square(chunk, out=chunk)
        squares += chunk.sum(axis=0)
    std = np.sqrt(squares / count)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def split_validation(x, y, validation_split, seed):
    """Holds a seeded, stratified validation part out of training data.

    The two parts are copies, so `x` is held twice until the caller drops
    it; the image folders decode their files in split order instead
    (`validation_indices`), with every split a view of one array.

    Args:
        x: Training images.
        y: Training labels, shape `(N,)`.
        validation_split: Fraction of the training data to hold out.
        seed: Non-negative integer seed for the split.

    Returns:
        Tuple `(x_train, y_train, x_val, y_val)`.

    Example:

    ```python
    x_tr, y_tr, x_val, y_val = split_validation(x, y, 0.1, seed=0)
    ```
    """
    keep, hold = validation_indices(y, validation_split, seed)
    return x[keep], y[keep], x[hold], y[hold]


def validation_indices(y, validation_split, seed):
    """The training and validation indices `split_validation` takes.

    Args:
        y: Training labels, shape `(N,)`.
        validation_split: Fraction of the training data to hold out.
        seed: Non-negative integer seed for the split.

    Returns:
        Tuple `(keep, hold)` of sorted index arrays, as `stratified_split`.

    Example:

    >>> validation_indices(np.array([0, 0, 1, 1]), 0.5, seed=0)[1].size
    2
    """
    return stratified_split(y, validation_split, np.random.default_rng(check_seed(seed)))


def check_seed(seed):
    """Returns `seed` as an `int` if it is a non-negative integer, else raises.

    NumPy's `SeedSequence` rejects negative numbers with an obscure message;
    this one names the argument.

    Args:
        seed: The seed to check.

    Returns:
        `seed` as a Python `int`.

    Raises:
        ValueError: If `seed` is not a non-negative integer (a `bool` is not).

    Example:

    >>> check_seed(np.int64(3))
    3
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    return int(seed)
