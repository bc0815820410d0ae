"""The 8x8 handwritten digits bundled with scikit-learn (works offline)."""

import numpy as np

from keras_crl._optional import optional_import
from keras_crl.data.dataset import Dataset
from keras_crl.data.dataset import check_seed
from keras_crl.data.dataset import stratified_split

# The test split is drawn with its own fixed seed so that runs with different
# `seed`s (repeats for error bars) are all scored on the same test images,
# as they would be on CIFAR's fixed test set.
_DEFAULT_TEST_SEED = 0


def load_digits(
    *,
    data_dir=None,
    validation_split=0.1,
    seed=0,
    test_split=0.2,
    test_seed=_DEFAULT_TEST_SEED,
):
    """Loads scikit-learn's digits: 1797 real 8x8 grayscale images, 10 classes.

    Pixel values 0..16 are scaled to `float32` in `[0, 1]`. The test set is a
    stratified `test_split` of all images, drawn with `test_seed`; the
    validation set is a stratified `validation_split` of the rest, drawn with
    `seed`. Mean and std come from the training split only.

    Args:
        data_dir: Unused; the data ship with scikit-learn.
        validation_split: Fraction of the non-test images held out for
            validation, in `[0, 1)`.
        seed: Seed of the validation split.
        test_split: Fraction of all images used as the test set, in `(0, 1)`.
        test_seed: Seed of the test split; fixed by default so that every
            `seed` is evaluated on the same test images.

    Returns:
        A `Dataset` with images of shape `(8, 8, 1)`, augmented (when asked)
        by shifts of at most one pixel and without flips.

    Example:

    ```python
    ds = load_digits(validation_split=0.1, seed=0)
    ds.x_train.shape, ds.x_val.shape, ds.x_test.shape
    # ((1294, 8, 8, 1), (144, 8, 8, 1), (359, 8, 8, 1))
    ```
    """
    del data_dir
    datasets = optional_import("sklearn.datasets", "data", "the digits data set")

    if not 0.0 < test_split < 1.0:
        raise ValueError(f"test_split must be in (0, 1), got {test_split}.")
    bunch = datasets.load_digits()
    x = (bunch.images.astype(np.float32) / np.float32(16.0))[..., None]
    y = bunch.target.astype(np.int32)

    rest, test = stratified_split(y, test_split, np.random.default_rng(check_seed(test_seed)))
    return Dataset.from_train_and_test(
        "digits",
        x[rest],
        y[rest],
        x[test],
        y[test],
        num_classes=10,
        class_names=[str(digit) for digit in range(10)],
        validation_split=validation_split,
        seed=seed,
        # The usual 4-pixel shift of a 32x32 image wipes out an 8x8 digit, and
        # digits are not mirror-symmetric.
        augmentation={"pad": 1, "flip": False},
    )
