"""Adience faces for age-group classification, read as published.

The five cross-validation folds are `fold_0_data.txt` .. `fold_4_data.txt`,
tab-separated with the header `user_id original_image face_id age gender x y
dx dy tilt_ang fiducial_yaw_angle fiducial_score`. A face's image is
`aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>`
(`aligned.tar.gz`) or `faces/<user_id>/coarse_tilt_aligned_face.<face_id>.
<original_image>` (`faces.tar.gz`, not aligned). The folds are
subject-exclusive: all faces of one Flickr user are in one fold.

Ages are written as the eight groups (with `(8, 12)` for 8-13), other ranges
(`(8, 23)`, `(27, 32)`, `(38, 42)`, `(38, 48)`), single numbers (`35`) or
`None`; `age_group` maps them onto the eight groups.
"""

import os
import re

import numpy as np

from keras_crl.data.listed import find_root
from keras_crl.data.listed import load_listed
from keras_crl.data.listed import require_file

# The eight age groups of Eidinger, Enbar and Hassner (2014), in years, both
# ends included.
AGE_GROUPS = ((0, 2), (4, 6), (8, 13), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
AGE_GROUP_NAMES = [f"{low}-{high}" for low, high in AGE_GROUPS]
NUM_FOLDS = 5
# The image archives: folder and file-name prefix.
IMAGES = {
    "aligned": ("aligned", "landmark_aligned_face"),
    "faces": ("faces", "coarse_tilt_aligned_face"),
}
_COLUMNS = ("user_id", "original_image", "face_id", "age")
_RANGE = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_HOW_TO_GET = (
    "Download aligned.tar.gz (or faces.tar.gz) and fold_0_data.txt .. fold_4_data.txt "
    "from the Adience benchmark's page and put them into one folder, the archive extracted."
)


def _best(scores):
    # The group with the highest score, or None when two share it.
    top = max(scores)
    return scores.index(top) if scores.count(top) == 1 else None


def age_group(age):
    """The age group of an Adience age string, and the rule that chose it.

    - A range that lies inside a group, or a number inside one: that group
      (rule `"in a group"`), e.g. `(8, 12)`, `(27, 32)`, `(38, 42)`, `42`.
    - Another range: the group it shares the most years with (`"largest
      overlap"`), e.g. `(38, 48)` -> 38-43.
    - A number between groups: the nearest group (`"nearest group"`), e.g.
      `23` -> 25-32, `57` -> 60-100.
    - A tie (`(8, 23)` shares 6 years with 8-13 and with 15-20; `3`, `7`,
      `14`, `35` lie halfway between two groups): no group (`"ambiguous"`).
    - `None`: no group (`"no age"`).

    Args:
        age: The `age` field of a fold file.

    Returns:
        Tuple `(index, rule)`: the group's index in `AGE_GROUPS` (or None
        when the face is dropped) and the rule's name.

    Raises:
        ValueError: For anything else (it is not the published file).

    Example:

    >>> age_group("(8, 12)"), age_group("(38, 48)"), age_group("57")
    ((2, 'in a group'), (5, 'largest overlap'), (7, 'nearest group'))
    >>> age_group("(8, 23)"), age_group("35"), age_group("None")
    ((None, 'ambiguous'), (None, 'ambiguous'), (None, 'no age'))
    """
    text = age.strip()
    if text == "None":
        return None, "no age"
    match = _RANGE.fullmatch(text)
    if match:
        low, high = int(match.group(1)), int(match.group(2))
    elif text.isdigit():
        low = high = int(text)
    else:
        raise ValueError(f"Unknown age {age!r}: expected '(low, high)', a number or 'None'.")
    if low > high:
        raise ValueError(f"Unknown age {age!r}: the range is reversed.")
    for index, (g_low, g_high) in enumerate(AGE_GROUPS):
        if g_low <= low and high <= g_high:
            return index, "in a group"
    if low < high:
        shared = [max(0, min(high, g_high) - max(low, g_low) + 1) for g_low, g_high in AGE_GROUPS]
        if max(shared) > 0:
            index = _best(shared)
            return index, "largest overlap" if index is not None else "ambiguous"
    distance = [max(g_low - low, high - g_high) for g_low, g_high in AGE_GROUPS]
    index = _best([-d for d in distance])
    return index, "nearest group" if index is not None else "ambiguous"


def read_fold(path):
    """The faces of one fold file.

    Args:
        path: `fold_<k>_data.txt`.

    Returns:
        A list of `(line, user_id, image name, age)` tuples, `line` the
        1-based line number and the image name
        `<face_id>.<original_image>`.

    Raises:
        FileNotFoundError: If `path` is missing.
        ValueError: Naming `path` (and the line), for a header without the
            needed columns or a line with too few fields.

    Example:

    ```python
    faces = read_fold("/data/adience/fold_0_data.txt")
    ```
    """
    require_file(path, "Adience fold file")
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    header = [name.strip() for name in lines[0].split("\t")] if lines else []
    missing = [name for name in _COLUMNS if name not in header]
    if missing:
        raise ValueError(
            f"{path} line 1: the header lacks {', '.join(missing)}; expected the "
            f"tab-separated columns {' '.join(_COLUMNS)} ..."
        )
    column = [header.index(name) for name in _COLUMNS]
    faces = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) <= max(column):
            raise ValueError(f"{path} line {number}: too few tab-separated fields in {line!r}.")
        user, original, face, age = (fields[i] for i in column)
        faces.append((number, user, f"{face}.{original}", age))
    return faces


def load_adience(
    *,
    data_dir=None,
    validation_split=0.1,
    seed=0,
    fold=0,
    image_size=224,
    images="aligned",
    stream=False,
    **stream_options,
):
    """Loads Adience's eight age groups; fold `fold` is the test split.

    The other four folds are the training images, of which a stratified,
    seeded part is held out for validation (faces of one user may be in
    both training and validation, never in training and test). Faces are
    mapped to groups by `age_group`; those without one are dropped, and the
    counts are printed. Evaluate with `keras_crl.metrics.OneOffAccuracy`
    beside accuracy.

    Args:
        data_dir: The folder with the fold files and `aligned/` (or `faces/`).
        validation_split: Fraction of the training images held out.
        seed: Seed of the validation split.
        fold: The test fold, `0` to `4`.
        image_size: Side of the square images, or `(height, width)`.
        images: `"aligned"` (`aligned/`) or `"faces"` (`faces/`).
        stream: Decode batch by batch (a `StreamingFolder`) instead of into
            memory.
        **stream_options: With `stream`, more `load_listed` options.

    Returns:
        A `Dataset` named `"adience"` (classes `AGE_GROUP_NAMES`), or with
        `stream` a `StreamingFolder`.

    Raises:
        DatasetNotAvailable: If `data_dir` has no `fold_0_data.txt`.
        FileNotFoundError: Naming the file (and line), for a missing fold
            file or listed image.
        ValueError: Naming the file and line, for an unknown age string or
            a malformed line; naming the user, if one is in two folds.

    Example:

    ```python
    ds = load_adience(data_dir="/data/adience", fold=0, image_size=224)
    ds.class_names[:3]  # ['0-2', '4-6', '8-13']
    ```
    """
    if isinstance(fold, bool) or fold not in range(NUM_FOLDS):
        raise ValueError(f"fold must be one of 0..{NUM_FOLDS - 1}, got {fold!r}.")
    if images not in IMAGES:
        raise ValueError(f"images must be one of {list(IMAGES)}, got {images!r}.")
    root = find_root(data_dir, "fold_0_data.txt", ["", "adience"], "Adience", _HOW_TO_GET)
    folder, prefix = IMAGES[images]
    rules = {}
    lists = [([], [], set()) for _ in range(NUM_FOLDS)]
    for k in range(NUM_FOLDS):
        path = os.path.join(root, f"fold_{k}_data.txt")
        files, labels, users = lists[k]
        for line, user, name, age in read_fold(path):
            try:
                group, rule = age_group(age)
            except ValueError as error:
                raise ValueError(f"{path} line {line}: {error}") from error
            rules[rule] = rules.get(rule, 0) + 1
            if group is None:
                continue
            file = os.path.join(root, folder, user, f"{prefix}.{name}")
            if not os.path.isfile(file):
                raise FileNotFoundError(f"{path} line {line}: image {file} is missing.")
            files.append(file)
            labels.append(group)
            users.add(user)
    # The published folds never share a user; files that do would let the
    # test faces' owners into training.
    test_files, test_labels, test_users = lists[fold]
    files, labels = [], []
    for k in range(NUM_FOLDS):
        if k == fold:
            continue
        files += lists[k][0]
        labels += lists[k][1]
        shared = sorted(lists[k][2] & test_users)
        if shared:
            raise ValueError(
                f"Adience: user {shared[0]} has faces in the test fold "
                f"{os.path.join(root, f'fold_{fold}_data.txt')} and in the training fold "
                f"{os.path.join(root, f'fold_{k}_data.txt')}; the folds must be "
                "subject-exclusive."
            )
    kept = rules.get("in a group", 0)
    mapped = rules.get("largest overlap", 0) + rules.get("nearest group", 0)
    print(
        f"Adience: {kept} faces in an age group, {mapped} mapped to one (nearest group "
        f"{rules.get('nearest group', 0)}, largest overlap {rules.get('largest overlap', 0)}), "
        f"{rules.get('no age', 0) + rules.get('ambiguous', 0)} dropped (no age "
        f"{rules.get('no age', 0)}, ambiguous {rules.get('ambiguous', 0)}); "
        f"test fold {fold}: {len(test_files)} faces, training folds: {len(files)}."
    )
    return load_listed(
        "adience",
        files,
        np.asarray(labels, np.int32),
        test_files,
        np.asarray(test_labels, np.int32),
        class_names=AGE_GROUP_NAMES,
        validation_split=validation_split,
        seed=seed,
        image_size=image_size,
        stream=stream,
        **stream_options,
    )
