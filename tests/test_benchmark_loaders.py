"""The benchmark loaders (CUB-200-2011, Stanford Cars, Adience, ImageNet) on miniature
trees in exactly their publishers' layouts.

Each image is a tiny JPEG whose colour says what it is: red its class, blue its
official split (or Adience fold), so the decoded arrays themselves show which images
went where. The annotated box is a block of that colour on a white image, so a crop
that misses the box shows white. JPEGs are saved without chroma subsampling and the
boxes lie on the 8-pixel blocks, so the colours survive compression.
"""

import os

import numpy as np
import pytest
from scipy.io import savemat

from keras_crl.data import StreamingFolder
from keras_crl.data import load_dataset
from keras_crl.data.adience import age_group

pytestmark = pytest.mark.once_per_suite

# (left, top, right, bottom) of every box in PIL's coordinates, on a 32 x 24 image.
BOX = (8, 8, 24, 16)
WHOLE = (0, 0, 32, 24)
TEST_BLUE, TRAIN_BLUE = 200, 0
TOLERANCE = 12


def red(label):
    return 40 + 60 * label


def write_jpeg(path, colour, box=BOX):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.new("RGB", (32, 24), (255, 255, 255))
    image.paste(colour, box)
    image.save(path, quality=95, subsampling=0)


def labels_from_red(x):
    return np.rint((x[..., 0].mean(axis=(1, 2)) - 40) / 60).astype(int)


def assert_split_colours(ds):
    """Test images are blue, training and validation images are not; red is the label."""
    for split, blue in (("train", TRAIN_BLUE), ("val", TRAIN_BLUE), ("test", TEST_BLUE)):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        assert len(x) > 0, split
        np.testing.assert_allclose(x[..., 2], blue, atol=TOLERANCE, err_msg=split)
        np.testing.assert_array_equal(labels_from_red(x), y, err_msg=split)


# CUB-200-2011 --------------------------------------------------------------------------

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


@pytest.fixture
def cub(tmp_path):
    """CUB_200_2011/ with 3 classes of 4 images; ids interleave train and test."""
    root = tmp_path / "CUB_200_2011"
    lines = {n: [] for n in ("images", "image_class_labels", "train_test_split", "bounding_boxes")}
    image_id = 0
    for c, name in enumerate(CUB_CLASSES):
        for k in range(4):
            image_id += 1
            is_train = k % 2 == 0
            relative = f"{name}/{name.split('.')[1]}_{image_id:04d}_{k}.jpg"
            blue = TRAIN_BLUE if is_train else TEST_BLUE
            write_jpeg(str(root / "images" / relative), (red(c), 0, blue))
            lines["images"].append(f"{image_id} {relative}")
            lines["image_class_labels"].append(f"{image_id} {c + 1}")
            lines["train_test_split"].append(f"{image_id} {int(is_train)}")
            x, y, r, b = BOX
            lines["bounding_boxes"].append(f"{image_id} {x}.0 {y}.0 {r - x}.0 {b - y}.0")
    lines["classes"] = [f"{c + 1} {name}" for c, name in enumerate(CUB_CLASSES)]
    for name, rows in lines.items():
        (root / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return root


def test_cub_official_split_labels_and_class_order(cub):
    ds = load_dataset(
        "cub200", data_dir=cub.parent, validation_split=0.34, crop_boxes=True, image_size=8
    )
    assert ds.class_names == CUB_CLASSES
    assert (len(ds.x_train) + len(ds.x_val), len(ds.x_test)) == (6, 6)
    assert_split_colours(ds)
    # In memory the splits are views of one decoded array, held once.
    assert ds.x_train.base is not None and ds.x_train.base is ds.x_val.base is ds.x_test.base


def test_cub_without_crop_keeps_the_whole_image(cub):
    ds = load_dataset("cub200", data_dir=cub, image_size=(12, 16))
    assert ds.x_test.shape[1:] == (12, 16, 3)
    # The corners are the white background.
    assert ds.x_test[:, 0, 0].min() > 255 - TOLERANCE


def test_cub_stream_lists_the_same_split(cub):
    ds = load_dataset(
        "cub200_stream", data_dir=cub, validation_split=0.34, crop_boxes=True, image_size=8
    )
    assert isinstance(ds, StreamingFolder)
    listed = (cub / "images.txt").read_text().split("\n")
    official_test = [str(cub / "images" / line.split()[1]) for line in listed[1::2] if line]
    assert ds.files_test == official_test
    assert not set(ds.files_test) & set(ds.files_train + ds.files_val)
    assert len(ds.files_train) + len(ds.files_val) == 6 and len(ds.files_val) == 2
    x, y = ds.pipeline("test", 6)[0]
    # The stream cuts the box too: no white left, the same colours as in memory.
    pixels = x * np.asarray(ds.std) + np.asarray(ds.mean)
    np.testing.assert_allclose(pixels[..., 2], TEST_BLUE / 255, atol=TOLERANCE / 255)
    np.testing.assert_array_equal(labels_from_red(pixels * 255), y)


def test_cub_missing_list_names_the_file(cub):
    os.remove(cub / "train_test_split.txt")
    with pytest.raises(FileNotFoundError, match="train_test_split.txt is missing"):
        load_dataset("cub200", data_dir=cub)


def test_cub_missing_image_names_list_and_line(cub):
    relative = (cub / "images.txt").read_text().split("\n")[4].split()[1]
    os.remove(cub / "images" / relative)
    with pytest.raises(FileNotFoundError, match=r"images\.txt line 5: image .*_0005_0\.jpg"):
        load_dataset("cub200", data_dir=cub)


def test_cub_image_without_a_split_names_the_file_and_id(cub):
    path = cub / "train_test_split.txt"
    path.write_text("\n".join(path.read_text().split("\n")[:-3]) + "\n")
    with pytest.raises(ValueError, match=r"train_test_split\.txt has no line for image id 11"):
        load_dataset("cub200", data_dir=cub)


# Stanford Cars -------------------------------------------------------------------------

CARS_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]


def write_annotations(path, labels):
    """A devkit annotations file: 1-based classes, MATLAB's 1-based inclusive boxes."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    records = np.zeros((1, len(labels)), dtype=[(f, "O") for f in fields])
    left, top, right, bottom = BOX
    for i, label in enumerate(labels):
        values = (left + 1, top + 1, right, bottom, label + 1, f"{i + 1:05d}.jpg")
        for field, value in zip(fields, values):
            records[0, i][field] = np.array([[value]]) if field != "fname" else value
    savemat(str(path), {"annotations": records})


@pytest.fixture
def cars(tmp_path):
    """The devkit layout; train and test images share file names, as published."""
    root = tmp_path / "stanford_cars"
    (root / "devkit").mkdir(parents=True)
    savemat(
        str(root / "devkit" / "cars_meta.mat"),
        {"class_names": np.array([CARS_CLASSES], dtype=object)},
    )
    for split, labels, blue in (
        ("train", [2, 0, 1, 0, 1, 2], TRAIN_BLUE),
        ("test", [1, 2, 0], 200),
    ):
        for i, label in enumerate(labels):
            write_jpeg(str(root / f"cars_{split}" / f"{i + 1:05d}.jpg"), (red(label), 0, blue))
    write_annotations(root / "devkit" / "cars_train_annos.mat", [2, 0, 1, 0, 1, 2])
    write_annotations(root / "cars_test_annos_withlabels.mat", [1, 2, 0])
    return root


def test_cars_official_split_labels_and_boxes(cars):
    ds = load_dataset(
        "stanford_cars", data_dir=cars, validation_split=0.5, crop_boxes=True, image_size=8
    )
    assert ds.class_names == CARS_CLASSES
    np.testing.assert_array_equal(ds.y_test, [1, 2, 0])
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (3, 3, 3)
    # The 1-based inclusive box, converted, holds no white edge of the image.
    assert_split_colours(ds)


def test_cars_stream_keeps_train_and_test_folders_apart(cars):
    ds = load_dataset("stanford_cars_stream", data_dir=cars, validation_split=0.5)
    assert ds.files_test == [str(cars / "cars_test" / f"{i:05d}.jpg") for i in (1, 2, 3)]
    assert all("cars_train" in f for f in ds.files_train + ds.files_val)
    assert sorted(ds.files_train + ds.files_val) == [
        str(cars / "cars_train" / f"{i:05d}.jpg") for i in range(1, 7)
    ]


def test_cars_corrupt_mat_names_the_file(cars):
    (cars / "devkit" / "cars_train_annos.mat").write_bytes(b"MATLAB 5.0 MAT-file, broken" * 9)
    with pytest.raises(ValueError, match=r"cars_train_annos\.mat is not a readable MATLAB file"):
        load_dataset("stanford_cars", data_dir=cars)


def test_cars_missing_image_names_the_mat_and_entry(cars):
    os.remove(cars / "cars_test" / "00002.jpg")
    with pytest.raises(
        FileNotFoundError, match=r"cars_test_annos_withlabels\.mat entry 2 \(00002\.jpg\)"
    ):
        load_dataset("stanford_cars", data_dir=cars)


def test_cars_missing_test_annotations_name_both_places(cars):
    os.remove(cars / "cars_test_annos_withlabels.mat")
    with pytest.raises(FileNotFoundError, match="neither .* nor .*devkit"):
        load_dataset("stanford_cars", data_dir=cars)


# Adience -------------------------------------------------------------------------------

HEADER = (
    "user_id\toriginal_image\tface_id\tage\tgender\tx\ty\tdx\tdy\ttilt_ang\t"
    "fiducial_yaw_angle\tfiducial_score"
)
# The kinds of age strings the published folds hold, with the group each maps to.
AGES = {
    "(0, 2)": 0,
    "(8, 12)": 2,
    "(25, 32)": 4,
    "(27, 32)": 4,
    "(38, 48)": 5,
    "57": 7,
    "13": 2,
    "(60, 100)": 7,
    "(8, 23)": None,
    "35": None,
    "None": None,
}


@pytest.fixture
def adience(tmp_path):
    """Five folds of two users each; every user has one face per age string."""
    return write_adience(
        tmp_path / "adience", lambda fold: (f"{fold}0000@N0{fold}", f"{fold}1111@N0{fold}")
    )


def write_adience(root, users, ages=AGES):
    """Adience's fold files and aligned faces under `root`: fold k holds
    `users(k)`, each with one face per age string of `ages` (age -> group)."""
    face_id = 0
    for fold in range(5):
        rows = [HEADER]
        for user in users(fold):
            for age, group in ages.items():
                face_id += 1
                original = f"{face_id}0000_abc_o.jpg"
                rows.append(f"{user}\t{original}\t{face_id}\t{age}\tf\t0\t0\t9\t9\t0\t0\t50")
                if group is not None:
                    path = root / "aligned" / user / f"landmark_aligned_face.{face_id}.{original}"
                    write_jpeg(str(path), (20 + 25 * group, 0, 40 * fold), box=WHOLE)
        (root / f"fold_{fold}_data.txt").write_text("\n".join(rows) + "\n")
    return root


def test_age_strings_map_by_the_documented_rule():
    assert {age: age_group(age)[0] for age in AGES} == AGES
    assert age_group("3") == (None, "ambiguous")  # halfway between 0-2 and 4-6
    assert age_group("23") == (4, "nearest group")


@pytest.mark.parametrize("fold", [0, 3])
def test_adience_test_fold_is_the_test_split(adience, fold, capsys):
    ds = load_dataset("adience", data_dir=adience, fold=fold, validation_split=0.25, image_size=8)
    assert ds.class_names == ["0-2", "4-6", "8-13", "15-20", "25-32", "38-43", "48-53", "60-100"]
    kept = sum(group is not None for group in AGES.values())
    assert (len(ds.x_test), len(ds.x_train) + len(ds.x_val)) == (2 * kept, 8 * kept)
    np.testing.assert_allclose(ds.x_test[..., 2], 40 * fold, atol=TOLERANCE)
    for split in ("train", "val"):
        folds = np.rint(getattr(ds, f"x_{split}")[..., 2].mean(axis=(1, 2)) / 40)
        assert fold not in folds and len(set(folds)) > 1
    for split in ("train", "val", "test"):
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        np.testing.assert_array_equal(np.rint((x[..., 0].mean(axis=(1, 2)) - 20) / 25), y)
    printed = capsys.readouterr().out
    assert "60 faces in an age group, 20 mapped to one" in printed
    assert "30 dropped (no age 10, ambiguous 20)" in printed


def test_adience_unknown_age_names_file_and_line(adience):
    path = adience / "fold_2_data.txt"
    rows = path.read_text().split("\n")
    rows[3] = rows[3].replace("(25, 32)", "(25, 32")
    path.write_text("\n".join(rows))
    with pytest.raises(ValueError, match=r"fold_2_data\.txt line 4: Unknown age '\(25, 32'"):
        load_dataset("adience", data_dir=adience)


def test_adience_user_in_test_and_train_folds_is_refused(adience):
    test_rows = (adience / "fold_0_data.txt").read_text().split("\n")
    other = adience / "fold_4_data.txt"
    other.write_text(other.read_text() + test_rows[1] + "\n")
    with pytest.raises(ValueError, match=r"user 00000@N00 .*fold_0_data\.txt.*fold_4_data\.txt"):
        load_dataset("adience", data_dir=adience, fold=0)


def test_adience_missing_image_names_fold_and_line(adience):
    path = adience / "fold_1_data.txt"
    user, original, face = path.read_text().split("\n")[2].split("\t")[:3]
    os.remove(adience / "aligned" / user / f"landmark_aligned_face.{face}.{original}")
    with pytest.raises(FileNotFoundError, match=r"fold_1_data\.txt line 3: image "):
        load_dataset("adience", data_dir=adience)


# ImageNet ------------------------------------------------------------------------------

SYNSETS = ["n01440764", "n01443537", "n01484850"]
# The devkit numbers synsets in its own order, not the sorted one, and also
# numbers inner nodes of the hierarchy (here ID 4).
META = [(1, "n01484850"), (2, "n01440764"), (3, "n01443537"), (4, "n00001740")]
VAL_SYNSETS = ["n01443537", "n01484850", "n01440764", "n01440764", "n01484850"]


@pytest.fixture
def imagenet(tmp_path):
    """train/ in synset folders, a flat val/, and both kinds of ground truth."""
    root = tmp_path / "imagenet"
    for label, synset in enumerate(SYNSETS):
        for k in range(4):
            path = root / "train" / synset / f"{synset}_{k}.JPEG"
            write_jpeg(str(path), (red(label), 0, 0), box=WHOLE)
    rows = ["ImageId,PredictionString"]
    ids = {synset: number for number, synset in META}
    truth = []
    for i, synset in enumerate(VAL_SYNSETS, start=1):
        image_id = f"ILSVRC2012_val_{i:08d}"
        colour = (red(SYNSETS.index(synset)), 0, TEST_BLUE)
        write_jpeg(str(root / "val" / f"{image_id}.JPEG"), colour, box=WHOLE)
        rows.append(f"{image_id},{synset} 1 2 30 20 {synset} 3 4 20 10")
        truth.append(str(ids[synset]))
    # Kaggle lists its rows in no particular order.
    (root / "LOC_val_solution.csv").write_text("\n".join([rows[0], *rows[:0:-1]]) + "\n")
    devkit = root / "ILSVRC2012_devkit_t12" / "data"
    devkit.mkdir(parents=True)
    (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(truth) + "\n")
    synsets = np.zeros((len(META), 1), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O")])
    for row, (number, synset) in enumerate(META):
        synsets[row, 0]["ILSVRC2012_ID"] = np.array([[number]])
        synsets[row, 0]["WNID"] = synset
    savemat(str(devkit / "meta.mat"), {"synsets": synsets})
    return root


@pytest.mark.parametrize("ground_truth", ["csv", "devkit"])
def test_imagenet_val_labels_from_either_ground_truth(imagenet, ground_truth):
    if ground_truth == "devkit":
        os.remove(imagenet / "LOC_val_solution.csv")
    ds = load_dataset("imagenet", data_dir=imagenet, validation_split=0.25, image_size=8)
    assert isinstance(ds, StreamingFolder) and ds.class_names == SYNSETS
    assert ds.files_test == [
        str(imagenet / "val" / f"ILSVRC2012_val_{i:08d}.JPEG") for i in range(1, 6)
    ]
    np.testing.assert_array_equal(ds.y_test, [SYNSETS.index(s) for s in VAL_SYNSETS])
    assert len(ds.files_train) == 9 and len(ds.files_val) == 3
    assert all("/train/" in f for f in ds.files_train + ds.files_val)
    x, y = ds.pipeline("test", 5)[0]
    pixels = (x * np.asarray(ds.std) + np.asarray(ds.mean)) * 255
    np.testing.assert_array_equal(labels_from_red(pixels), y)


def test_imagenet_val_synset_not_in_train_names_file_and_line(imagenet):
    path = imagenet / "LOC_val_solution.csv"
    path.write_text(path.read_text().replace("n01443537 1", "n09999999 1"))
    with pytest.raises(
        ValueError, match=r"LOC_val_solution\.csv line 6: synset n09999999 .* not a class"
    ):
        load_dataset("imagenet", data_dir=imagenet)


def test_imagenet_devkit_id_that_is_no_leaf_class_names_file_and_line(imagenet):
    os.remove(imagenet / "LOC_val_solution.csv")
    path = imagenet / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    path.write_text("2\n4\n1\n2\n1\n")
    with pytest.raises(
        ValueError, match=r"ground_truth\.txt line 2: synset n00001740 .* not a class"
    ):
        load_dataset("imagenet", data_dir=imagenet)


def test_imagenet_missing_val_image_names_the_line(imagenet):
    os.remove(imagenet / "val" / "ILSVRC2012_val_00000003.JPEG")
    with pytest.raises(FileNotFoundError, match=r"csv line 4: image .*val_00000003\.JPEG"):
        load_dataset("imagenet", data_dir=imagenet)


def test_imagenet_without_ground_truth_says_what_to_add(imagenet):
    os.remove(imagenet / "LOC_val_solution.csv")
    os.remove(imagenet / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    with pytest.raises(FileNotFoundError, match=r"meta\.mat is missing"):
        load_dataset("imagenet", data_dir=imagenet)


def test_imagenet_is_never_in_memory(imagenet):
    with pytest.raises(ValueError, match="always streamed"):
        load_dataset("imagenet", data_dir=imagenet, stream=False)


def test_imagenet_val_already_in_synset_folders(imagenet):
    # What many preparation scripts make of val/: read as folders, no ground truth needed.
    os.remove(imagenet / "LOC_val_solution.csv")
    for i, synset in enumerate(VAL_SYNSETS, start=1):
        name = f"ILSVRC2012_val_{i:08d}.JPEG"
        os.makedirs(imagenet / "val" / synset, exist_ok=True)
        os.rename(imagenet / "val" / name, imagenet / "val" / synset / name)
    ds = load_dataset("imagenet", data_dir=imagenet)
    labels = dict(zip(ds.files_test, ds.y_test))
    assert len(labels) == 5
    for i, synset in enumerate(VAL_SYNSETS, start=1):
        path = str(imagenet / "val" / synset / f"ILSVRC2012_val_{i:08d}.JPEG")
        assert labels[path] == SYNSETS.index(synset)
