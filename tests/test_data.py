"""Tests of keras_crl.data. Backend-neutral: everything but the fit test is
NumPy, and must give the same results under every KERAS_BACKEND."""

import hashlib
import os
import pickle
import urllib.error

import keras
import numpy as np
import pytest

from keras_crl import data
from keras_crl.data import BatchPipeline
from keras_crl.data import Dataset
from keras_crl.data import DatasetNotAvailable
from keras_crl.data import augment
from keras_crl.data import cifar
from keras_crl.data import folder
from keras_crl.data import load_dataset
from keras_crl.data import svhn
from tests import memory_probe
from tests.backend_utils import batch_digest

MEAN3 = (0.5, 0.4, 0.3)
STD3 = (0.25, 0.2, 0.1)


def _rows(x):
    return {row.tobytes() for row in x.reshape(len(x), -1)}


# --------------------------------------------------------------- registry


def test_list_datasets():
    assert data.list_datasets() == [
        "digits", "synthetic", "cifar10", "cifar100", "svhn", "folder", "folder_stream",
        "cub200", "cub200_stream", "stanford_cars", "stanford_cars_stream", "adience",
        "imagenet",
    ]  # fmt: skip


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError) as info:
        load_dataset("mnist-but-not-really")
    for name in data.list_datasets():
        assert name in str(info.value)


@pytest.mark.parametrize("split", [-0.1, 1.0])
def test_bad_validation_split(split):
    with pytest.raises(ValueError, match="validation_split"):
        load_dataset("digits", validation_split=split)


def test_dataset_rejects_labels_out_of_range():
    x = np.zeros((4, 2, 2, 1), np.float32)
    ok = np.array([0, 1, 2, 0], np.int64)
    with pytest.raises(ValueError, match="outside the class range"):
        Dataset("t", x, np.array([0, 1, 3, 0]), x, ok, x, ok, 3, (0.0,), (1.0,))
    with pytest.raises(ValueError, match="outside the class range"):
        Dataset("t", x, ok, x, ok, x, np.array([0, -1, 0, 0]), 3, (0.0,), (1.0,))
    ds = Dataset("t", x, ok, x, ok, x, ok, 3, (0.0,), (1.0,))
    assert ds.y_train.dtype == np.int32 and ds.input_shape == (2, 2, 1)


def test_stratified_split_sizes_and_balance():
    y = np.repeat(np.arange(4), [50, 30, 15, 5])
    keep, hold = data.stratified_split(y, 0.2, np.random.default_rng(0))
    assert len(hold) == 20 and len(keep) == 80
    assert np.intersect1d(keep, hold).size == 0
    assert np.bincount(y[hold]).tolist() == [10, 6, 3, 1]


@pytest.mark.once_per_suite
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_channel_stats_chunk_by_chunk_equal_the_whole(dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 5, 4, 3), dtype=np.uint8)
    x = x if dtype == np.uint8 else (x / 255.0).astype(np.float32)
    whole = x.astype(np.float64) / (255.0 if dtype == np.uint8 else 1.0)
    expected = whole.mean(axis=(0, 1, 2)), whole.std(axis=(0, 1, 2))
    # One image, three images (7 is no multiple: a short last chunk), all.
    for chunk_bytes in (1, 3 * 5 * 4 * 3 * 8, 2**30):
        mean, std = data.channel_stats(x, chunk_bytes=chunk_bytes)
        np.testing.assert_allclose(mean, expected[0], rtol=1e-13)
        np.testing.assert_allclose(std, expected[1], rtol=1e-13)


# ----------------------------------------------------------------- digits


def test_digits_shapes_ranges_and_splits():
    ds = load_dataset("digits", validation_split=0.1, seed=0)
    assert ds.name == "digits" and ds.num_classes == 10
    assert ds.input_shape == (8, 8, 1)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (1294, 144, 359)
    splits = [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]
    for x, y in splits:
        assert x.dtype == np.float32 and y.dtype == np.int32 and y.ndim == 1
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(np.unique(y)) == set(range(10))
    # The three splits partition the 1797 images (all distinct in digits).
    train, val, test = _rows(ds.x_train), _rows(ds.x_val), _rows(ds.x_test)
    assert not train & val and not train & test and not val & test
    assert len(train | val | test) == 1797
    np.testing.assert_allclose(ds.mean, [ds.x_train.mean()], rtol=1e-5)
    np.testing.assert_allclose(ds.std, [ds.x_train.std()], rtol=1e-5)


def test_digits_seed_moves_validation_not_test():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=1)
    again = load_dataset("digits", seed=0)
    np.testing.assert_array_equal(a.x_val, again.x_val)
    assert _rows(a.x_val) != _rows(b.x_val)
    np.testing.assert_array_equal(a.x_test, b.x_test)


# -------------------------------------------------------------- synthetic


def test_synthetic_deterministic_per_seed():
    kwargs = dict(num_classes=4, image_size=12, channels=2, num_samples=120)
    a = load_dataset("synthetic", seed=3, **kwargs)
    b = load_dataset("synthetic", seed=3, **kwargs)
    c = load_dataset("synthetic", seed=4, **kwargs)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.input_shape == (12, 12, 2) and a.num_classes == 4
    assert len(a.x_train) + len(a.x_val) == 120 and len(a.x_val) == 12
    assert a.x_train.dtype == np.uint8
    assert set(np.unique(a.y_train)) == set(range(4))


def test_synthetic_is_learnable_by_nearest_class_mean():
    ds = load_dataset("synthetic", num_classes=5, image_size=16, num_samples=300)
    x = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float64)
    centroids = np.stack([x[ds.y_train == k].mean(0) for k in range(5)])
    xt = ds.x_test.reshape(len(ds.x_test), -1).astype(np.float64)
    pred = np.argmin(((xt[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == ds.y_test).mean() > 0.9


# ------------------------------------------------------------------ CIFAR


def test_cifar_statistics_constants():
    assert cifar.CIFAR10_MEAN == (0.4914, 0.4822, 0.4465)
    assert cifar.CIFAR10_STD == (0.2470, 0.2435, 0.2616)
    assert cifar.CIFAR100_MEAN == (0.5071, 0.4865, 0.4409)
    assert cifar.CIFAR100_STD == (0.2673, 0.2564, 0.2762)
    assert len(cifar.CIFAR10_CLASSES) == 10
    assert len(set(cifar.CIFAR100_CLASSES)) == 100
    assert len(set(cifar.CIFAR100_COARSE_CLASSES)) == 20


@pytest.mark.parametrize(
    "name,module,folder_name",
    [("cifar10", "cifar10", "cifar-10-batches-py"),
     ("cifar100", "cifar100", "cifar-100-python")],
)  # fmt: skip
def test_cifar_without_network_raises_clear_error(tmp_path, monkeypatch, name, module, folder_name):
    def offline(*args, **kwargs):
        # What keras' get_file raises when the host cannot be resolved.
        raise Exception("URL fetch failure on https://www.cs.toronto.edu: -3")

    monkeypatch.setattr(getattr(keras.datasets, module), "load_data", offline)
    with pytest.raises(DatasetNotAvailable) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "network" in message and folder_name in message
    assert str(tmp_path) in message
    assert ".tar.gz" in message


def test_cifar_from_keras_loader_is_nhwc_int32_and_split(monkeypatch):
    rng = np.random.default_rng(0)
    # Shaped as keras returns it under channels_first: (N, 3, 32, 32).
    x = rng.integers(0, 256, (100, 3, 32, 32), dtype=np.uint8)
    y = (np.arange(100) % 10).astype(np.uint8).reshape(-1, 1)

    monkeypatch.setattr(cifar, "_find_local_copy", lambda spec, data_dir: None)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y), (x[:20], y[:20])))
    ds = load_dataset("cifar10", validation_split=0.2, seed=0)
    assert ds.input_shape == (32, 32, 3)
    assert ds.y_train.dtype == np.int32 and ds.y_train.ndim == 1
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (80, 20, 20)
    np.testing.assert_array_equal(ds.x_test, x[:20].transpose(0, 2, 3, 1))
    assert ds.mean == cifar.CIFAR10_MEAN and ds.std == cifar.CIFAR10_STD
    assert _rows(ds.x_train) | _rows(ds.x_val) == _rows(x.transpose(0, 2, 3, 1))


def _write_cifar_batch(path, n, labels_key, offset):
    planes = np.concatenate([np.full((n, 1024), offset + c, np.uint8) for c in range(3)], axis=1)
    entries = {b"data": planes, labels_key: (np.arange(n) % 10).tolist()}
    with open(path, "wb") as f:
        pickle.dump(entries, f)


def test_cifar10_reads_local_extracted_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _write_cifar_batch(folder / f"data_batch_{i}", 10, b"labels", 10 * i)
    _write_cifar_batch(folder / "test_batch", 10, b"labels", 100)
    ds = load_dataset("cifar10", data_dir=tmp_path, validation_split=0.2)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (40, 10, 10)
    # Rows are stored as R plane, G plane, B plane.
    assert ds.x_test[0, 5, 7].tolist() == [100, 101, 102]


def test_cifar_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil"
    with open(path, "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": [0]}, f)
    with pytest.raises(pickle.UnpicklingError):
        cifar._read_batch(path, "labels")


# ------------------------------------------------------------------- SVHN


def _no_network(url, destination):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_svhn_missing_files_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(svhn, "_download", _no_network)
    with pytest.raises(DatasetNotAvailable) as info:
        load_dataset("svhn", data_dir=tmp_path)
    message = str(info.value)
    assert "network" in message and "train_32x32.mat" in message
    assert str(tmp_path) in message
    assert os.listdir(tmp_path) == []  # no partial download left behind


def test_svhn_missing_file_without_download(tmp_path):
    with pytest.raises(DatasetNotAvailable, match="train_32x32.mat"):
        svhn.load_svhn(data_dir=tmp_path, download=False)


def test_svhn_local_file_with_wrong_checksum(tmp_path):
    (tmp_path / "train_32x32.mat").write_bytes(b"not the real file")
    with pytest.raises(svhn.ChecksumMismatch) as info:
        load_dataset("svhn", data_dir=tmp_path)
    assert "train_32x32.mat" in str(info.value)
    assert "e26dedcc434d2e4c54c9b2d4a06d8373" in str(info.value)
    assert (tmp_path / "train_32x32.mat").exists()  # a user's file is kept


def test_svhn_corrupted_download_is_discarded(tmp_path, monkeypatch):
    def bad_download(url, destination):
        with open(destination, "wb") as f:
            f.write(b"<html>captive portal</html>")

    monkeypatch.setattr(svhn, "_download", bad_download)
    with pytest.raises(svhn.ChecksumMismatch, match="discarded"):
        load_dataset("svhn", data_dir=tmp_path)
    assert os.listdir(tmp_path) == []


def test_svhn_verify_checksum(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello svhn")
    svhn.verify_checksum(path, hashlib.md5(b"hello svhn").hexdigest())
    svhn.verify_checksum(path, hashlib.sha256(b"hello svhn").hexdigest())
    with pytest.raises(svhn.ChecksumMismatch):
        svhn.verify_checksum(path, hashlib.md5(b"other").hexdigest())


def test_svhn_loads_mat_files_and_maps_label_10_to_0(tmp_path, monkeypatch):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    files = {}
    for split, n in [("train", 40), ("test", 10)]:
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # labels 1..10
        name = svhn.FILES[split][0]
        savemat(tmp_path / name, {"X": x, "y": y})
        md5 = hashlib.md5((tmp_path / name).read_bytes()).hexdigest()
        files[split] = (name, md5)
        if split == "test":
            test_x = x
    monkeypatch.setattr(svhn, "FILES", files)
    ds = load_dataset("svhn", data_dir=tmp_path, validation_split=0.2)
    assert ds.input_shape == (32, 32, 3) and ds.x_train.dtype == np.uint8
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (32, 8, 10)
    assert ds.y_test.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    np.testing.assert_array_equal(ds.x_test[3], test_x[..., 3])
    assert not ds.pipeline("train", 8, augment=True).flip  # digits are not symmetric


# ----------------------------------------------------------- image folder


def _image(path, size=(8, 6), value=0, fmt=None):
    from PIL import Image

    width, height = size
    pixels = np.full((height, width, 3), value, np.uint8)
    pixels[0, 0] = (value + 7) % 256
    Image.fromarray(pixels).save(path, format=fmt)


@pytest.fixture
def image_tree(tmp_path):
    root = tmp_path / "train"
    for k, cls in enumerate(["cat", "dog", "emu"]):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            _image(root / cls / f"{i}.png", value=40 * k + i)
    (root / "cat" / "notes.txt").write_text("not an image, skipped")
    return root


def test_image_folder_loads(image_tree):
    ds = folder.load_image_folder(image_tree, validation_split=0.25, seed=0)
    assert ds.class_names == ["cat", "dog", "emu"] and ds.num_classes == 3
    assert ds.input_shape == (6, 8, 3) and ds.x_train.dtype == np.uint8
    assert len(ds.x_test) == 6 and len(ds.x_val) == 6 and len(ds.x_train) == 18
    for x, y in [(ds.x_train, ds.y_train), (ds.x_test, ds.y_test)]:
        # Image values encode the class: 40 * label + i, i < 10.
        np.testing.assert_array_equal(x[:, 3, 3, 0] // 40, y)
    np.testing.assert_allclose(ds.mean, (ds.x_train / 255.0).mean(axis=(0, 1, 2)), rtol=1e-6)


@pytest.mark.once_per_suite
def test_image_folder_in_memory_peaks_within_one_and_a_half_times_its_pixels(tmp_path):
    # 320 images at 256 px: 63 MB as uint8, well above the few MB of fixed
    # overhead (channel_stats' 8 MiB buffer, a batch). Measured: 1.17 times;
    # before, 14 times (float64 statistics of the whole set, splits copied).
    size = 256
    tree = memory_probe.write_jpegs(tmp_path / "folder", 320, 320, 240)
    probe = memory_probe.measure("folder", tree, size)
    assert probe["images"] == 320 and probe["pixels"] == 320 * size * size * 3
    assert probe["growth"] < 1.5 * probe["pixels"], probe


@pytest.mark.once_per_suite
def test_image_folder_splits_are_views_of_one_decoded_array(image_tree):
    ds = load_dataset("folder", data_dir=image_tree, validation_split=0.25, test_split=0.2)
    base = ds.x_train.base
    assert base is not None and ds.x_val.base is base and ds.x_test.base is base
    assert len(base) == len(ds.x_train) + len(ds.x_val) + len(ds.x_test)


def test_image_folder_resize_grayscale_and_test_dir(image_tree, tmp_path):
    test_root = tmp_path / "test"
    (test_root / "dog").mkdir(parents=True)
    _image(test_root / "dog" / "a.jpg", size=(20, 10), value=50)
    ds = load_dataset(
        "folder",
        data_dir=image_tree,
        image_size=(4, 5),
        test_dir=test_root,
        color_mode="grayscale",
    )
    assert ds.input_shape == (4, 5, 1)
    assert ds.y_test.tolist() == [1] and len(ds.x_train) + len(ds.x_val) == 30


def test_image_folder_missing_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        folder.load_image_folder(tmp_path / "nowhere")


def test_image_folder_empty_class_folder(image_tree):
    (image_tree / "fox").mkdir()
    with pytest.raises(ValueError, match="fox") as info:
        folder.load_image_folder(image_tree)
    assert "no images" in str(info.value)


def test_image_folder_corrupt_file(image_tree):
    (image_tree / "dog" / "bad.png").write_bytes(b"\x89PNG this is no image")
    with pytest.raises(ValueError, match="bad.png"):
        folder.load_image_folder(image_tree)


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("JPEG", "jpg")])
def test_image_folder_truncated_file(image_tree, fmt, ext):
    path = image_tree / "emu" / f"cut.{ext}"
    _image(path, value=90, fmt=fmt)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(ValueError, match=f"cut.{ext}"):
        folder.load_image_folder(image_tree)


def test_image_folder_mismatched_sizes(image_tree):
    _image(image_tree / "emu" / "big.png", size=(9, 6))
    with pytest.raises(ValueError, match="big.png"):
        folder.load_image_folder(image_tree)
    ds = folder.load_image_folder(image_tree, image_size=6)
    assert ds.input_shape == (6, 6, 3)


def test_image_folder_test_class_out_of_range(image_tree, tmp_path):
    test_root = tmp_path / "test"
    (test_root / "yak").mkdir(parents=True)
    _image(test_root / "yak" / "a.png")
    with pytest.raises(ValueError, match="yak"):
        folder.load_image_folder(image_tree, test_dir=test_root)


def test_folder_needs_a_path():
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("folder")


# ---------------------------------------------------------------- augment


def _reference_crop_flip(x, seed, pad):
    # Straightforward per-image version, following the documented draws.
    rng = np.random.default_rng(seed)
    n, h, w, _ = x.shape
    offsets = rng.integers(0, 2 * pad + 1, size=(n, 2))
    flips = rng.random(n) < 0.5
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.empty_like(x)
    for i in range(n):
        r, c = offsets[i]
        crop = padded[i, r : r + h, c : c + w]
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out


def test_augment_matches_reference_and_keeps_input():
    x = np.random.default_rng(0).integers(1, 256, (64, 10, 12, 3), dtype=np.uint8)
    before = x.copy()
    out = augment.random_crop_flip(x, np.random.default_rng(5), pad=3)
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, _reference_crop_flip(x, 5, 3))
    np.testing.assert_array_equal(x, before)


def test_crop_shifts_content_and_pads_with_zeros():
    x = np.random.default_rng(1).integers(1, 256, (32, 8, 8, 1), dtype=np.uint8)
    out = augment.random_crop(x, np.random.default_rng(0), pad=2)
    shifts = set()
    for src, dst in zip(x[..., 0], out[..., 0]):
        found = [
            (dr, dc)
            for dr in range(-2, 3)
            for dc in range(-2, 3)
            if np.array_equal(dst, _shift(src, dr, dc))
        ]
        assert found, "every crop is the image shifted, zero-filled"
        shifts.add(found[0])
    assert len(shifts) > 5


def _shift(img, dr, dc):
    out = np.zeros_like(img)
    h, w = img.shape
    out[max(dr, 0) : h + min(dr, 0), max(dc, 0) : w + min(dc, 0)] = img[
        max(-dr, 0) : h + min(-dr, 0), max(-dc, 0) : w + min(-dc, 0)
    ]
    return out


def test_flip_really_flips():
    x = np.random.default_rng(2).random((40, 5, 7, 3)).astype(np.float32)
    out = augment.random_flip(x, np.random.default_rng(0))
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 5 < sum(flipped) < 35


def test_augment_deterministic_and_formats():
    x = np.random.default_rng(3).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8)
    a = augment.random_crop_flip(x, np.random.default_rng(7))
    b = augment.random_crop_flip(x, np.random.default_rng(7))
    c = augment.random_crop_flip(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    cf = augment.random_crop_flip(
        x.transpose(0, 3, 1, 2), np.random.default_rng(7), data_format="channels_first"
    )
    np.testing.assert_array_equal(cf, a.transpose(0, 3, 1, 2))
    with pytest.raises(TypeError):
        augment.random_crop_flip(x, 7)


# --------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (103, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 103).astype(np.int64)
    return x, y


def _pipeline(images, **kwargs):
    x, y = images
    options = dict(mean=MEAN3, std=STD3, augment=True, shuffle=True, seed=11)
    options.update(kwargs)
    return BatchPipeline(x, y, 16, **options)


def _digests(pipeline):
    return [batch_digest(*pipeline[i]) for i in range(len(pipeline))]


def test_pipeline_batches_are_deterministic(images):
    assert _digests(_pipeline(images)) == _digests(_pipeline(images))
    assert _digests(_pipeline(images)) != _digests(_pipeline(images, seed=12))


def test_pipeline_random_access_order_independent(images):
    sequential = _pipeline(images)
    sequential.on_epoch_end()
    sequential.on_epoch_end()
    for i in range(3):
        sequential[i]
    expected = batch_digest(*sequential[3])
    direct = _pipeline(images)
    direct.epoch = 2
    assert batch_digest(*direct[3]) == expected
    backwards = [batch_digest(*direct[i]) for i in reversed(range(len(direct)))]
    assert backwards[::-1] == _digests(sequential)


def test_pipeline_epochs_differ_and_cover_data(images):
    p = _pipeline(images, augment=False)
    orders = []
    for _ in range(2):
        orders.append(np.concatenate([p.indices(i) for i in range(len(p))]))
        labels = np.concatenate([p[i][1] for i in range(len(p))])
        np.testing.assert_array_equal(labels, images[1][orders[-1]])
        p.on_epoch_end()
    assert sorted(orders[0]) == list(range(103)) == sorted(orders[1])
    assert not np.array_equal(orders[0], orders[1])
    assert p.epoch == 2


def test_pipeline_resume_with_initial_epoch(images):
    trained = _pipeline(images)
    trained.on_epoch_end()
    trained.on_epoch_end()
    resumed = _pipeline(images, initial_epoch=2)
    assert resumed.epoch == 2
    assert _digests(resumed) == _digests(trained)


def test_pipeline_normalisation(images):
    x, y = images
    p = BatchPipeline(x, y, 16, mean=MEAN3, std=STD3)
    xb, yb = p[1]
    assert xb.dtype == np.float32 and yb.dtype == np.int32
    expected = (x[16:32] / 255.0 - np.array(MEAN3)) / np.array(STD3)
    np.testing.assert_allclose(xb, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(yb, y[16:32])
    floats = BatchPipeline(x / np.float32(255), y, 16, mean=MEAN3, std=STD3)
    np.testing.assert_allclose(floats[1][0], expected, rtol=1e-5, atol=1e-5)
    assert len(p) == 7 and len(p[6][0]) == 7
    np.testing.assert_array_equal(x, images[0])  # input untouched


def test_pipeline_channels_first(images):
    last = _pipeline(images)
    first = _pipeline(images, data_format="channels_first")
    xb, yb = first[2]
    assert xb.shape == (16, 3, 8, 8) and xb.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(xb, last[2][0].transpose(0, 3, 1, 2))


def test_pipeline_drop_remainder(images):
    p = _pipeline(images, drop_remainder=True)
    assert len(p) == 6
    assert all(len(p[i][0]) == 16 for i in range(len(p)))
    with pytest.raises(IndexError):
        p[6]


def test_pipeline_augmentation_changes_images(images):
    plain = _pipeline(images, augment=False)
    augmented = _pipeline(images)
    np.testing.assert_array_equal(plain[0][1], augmented[0][1])
    assert not np.array_equal(plain[0][0], augmented[0][0])


def test_pipeline_arguments(images):
    x, y = images
    p = BatchPipeline(x, y, 8, mean=MEAN3, std=STD3, workers=2, max_queue_size=3)
    assert p.workers == 2 and p.max_queue_size == 3
    with pytest.raises(ValueError, match="one per channel"):
        BatchPipeline(x, y, 8, mean=(0.5,), std=(0.2,))
    with pytest.raises(ValueError, match="y must"):
        BatchPipeline(x, y[:-1], 8, mean=MEAN3, std=STD3)
    with pytest.raises(ValueError, match="epoch"):
        p.epoch = -1


def test_batch_digest():
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    y = np.array([0, 1], np.int32)
    assert batch_digest(x, y) == batch_digest(x.copy(), y.copy())
    assert batch_digest(x, y) != batch_digest(x.reshape(3, 4), y)
    assert batch_digest(x, y) != batch_digest(x.astype(np.float64), y)
    tensor = keras.ops.convert_to_tensor(x)
    assert batch_digest(tensor, keras.ops.convert_to_tensor(y)) == batch_digest(x, y)


# ------------------------------------------------- each source's pipeline()

# What train.py built before the sources made their own pipelines: the recipe's
# pad, then the data set's exceptions by name.
_OLD_AUGMENTATION = {"digits": {"pad": 1, "flip": False}, "svhn": {"flip": False}}


def _old_batch_pipeline(ds, name, split, batch_size, limit=None, **options):
    x, y = getattr(ds, f"x_{split}")[:limit], getattr(ds, f"y_{split}")[:limit]
    common = dict(mean=ds.mean, std=ds.std, num_classes=ds.num_classes)
    if split == "train":
        common.update({"pad": 4, "flip": True, **_OLD_AUGMENTATION.get(name, {})})
    return BatchPipeline(x, y, batch_size, **common, **options)


def _epochs_digests(pipeline, epochs=(0, 3)):
    digests = []
    for epoch in epochs:
        pipeline.epoch = epoch
        digests += _digests(pipeline)
    return digests


TRAIN = dict(augment=True, shuffle=True, seed=5, initial_epoch=2)


@pytest.mark.once_per_suite
@pytest.mark.parametrize("name", ["digits", "synthetic"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_dataset_pipeline_gives_the_batches_train_built_before(name, data_format):
    options = dict(num_samples=300) if name == "synthetic" else {}
    ds = load_dataset(name, **options)
    train = ds.pipeline("train", 32, limit=200, data_format=data_format, **TRAIN)
    old = _old_batch_pipeline(ds, name, "train", 32, 200, data_format=data_format, **TRAIN)
    assert train.epoch == 2 and len(train) == 7
    assert _epochs_digests(train) == _epochs_digests(old)
    for split in ("val", "test"):
        new = ds.pipeline(split, 32, data_format=data_format, drop_remainder=True)
        old = _old_batch_pipeline(ds, name, split, 32, data_format=data_format, drop_remainder=True)
        assert not new.augment and _digests(new) == _digests(old)


@pytest.mark.once_per_suite
def test_dataset_pipeline_shard_is_the_slice_shard_batches_cut():
    from keras_crl.parallel import ShardBatches

    ds = load_dataset("digits")
    old = _old_batch_pipeline(ds, "digits", "train", 32, drop_remainder=True, **TRAIN)
    shards = [ds.pipeline("train", 32, shard_index=i, shard_count=4, **TRAIN) for i in range(4)]
    for epoch in (0, 3):
        old.epoch = epoch
        for i, shard in enumerate(shards):
            shard.epoch = epoch
            assert len(shard) == len(old) == len(ds.y_train) // 32 and shard.drop_remainder
            assert _digests(shard) == _digests(ShardBatches(old, i, 4))
    with pytest.raises(ValueError, match="equal shards"):
        ds.pipeline("train", 30, shard_count=4)
    with pytest.raises(ValueError, match="shard_index"):
        ds.pipeline("train", 32, shard_index=4, shard_count=4)


@pytest.mark.once_per_suite
def test_dataset_pipeline_options_override_the_data_sets():
    ds = load_dataset("digits")
    assert ds.augmentation == {"pad": 1, "flip": False}
    train = ds.pipeline("train", 64, augment=True, pad=2, mean=(0.5,))
    assert (train.pad, train.flip, train.mean) == (2, False, (0.5,))
    with pytest.raises(ValueError, match="split must be one of"):
        ds.pipeline("validation", 64)
    with pytest.raises(ValueError, match="augmentation takes 'pad' and 'flip'"):
        Dataset.from_train_and_test(
            "bad", ds.x_train, ds.y_train, ds.x_test, ds.y_test, num_classes=10,
            class_names=None, validation_split=0.0, seed=0, augmentation={"scale": 2},
        )  # fmt: skip


@pytest.mark.once_per_suite
def test_streaming_folder_pipeline_gives_the_batches_train_built_before(image_tree):
    from keras_crl.data import FolderStream

    ds = load_dataset("folder_stream", data_dir=image_tree, image_size=4, test_split=0.2, workers=0)
    # The old train.py passed the folder's own statistics and labels' range.
    listed = dict(image_size=4, mean=ds.mean, std=ds.std, **ds.stream_options)
    before = dict(listed, num_classes=ds.num_classes, data_format="channels_first")
    shard = dict(shard_index=1, shard_count=2, drop_remainder=True)
    new = ds.pipeline("train", 8, limit=16, data_format="channels_first", **shard, **TRAIN)
    old = FolderStream(ds.files_train[:16], ds.y_train[:16], 8, **{**before, **shard}, **TRAIN)
    assert len(new) == 2 and _epochs_digests(new) == _epochs_digests(old)
    for split in ("val", "test"):
        new = ds.pipeline(split, 4, data_format="channels_first")
        files = getattr(ds, f"files_{split}")
        old = FolderStream(files, getattr(ds, f"y_{split}"), 4, **before)
        assert not new.augment and _digests(new) == _digests(old)
    with pytest.raises(ValueError, match="split must be one of"):
        ds.pipeline("validation", 4)


class _RecordingPipeline(BatchPipeline):
    def __getitem__(self, index):
        self.served.append((self.epoch, int(index)))
        return super().__getitem__(index)


def _fit(ds, callbacks_for=None, epochs=2):
    pipeline = _RecordingPipeline(
        ds.x_train, ds.y_train, 128, mean=ds.mean, std=ds.std,
        augment=True, pad=1, shuffle=True, seed=0,
    )  # fmt: skip
    pipeline.served = []
    model = keras.Sequential(
        [keras.Input(ds.input_shape), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    callbacks = [data.EpochSync(pipeline)] if callbacks_for else []
    history = model.fit(pipeline, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)
    assert np.isfinite(history.history["loss"]).all()
    return pipeline


def _served_in(pipeline, epoch):
    return sorted(i for e, i in pipeline.served if e == epoch)


def test_fit_on_pipeline_with_epoch_sync():
    ds = load_dataset("digits")
    pipeline = _fit(ds, callbacks_for=True)
    # Keras epoch e trains on exactly the batches of pipeline epoch e. Epoch
    # 0 may also see the few batches Keras peeks at before training.
    everything = list(range(len(pipeline)))
    assert _served_in(pipeline, 1) == everything
    assert sorted(set(_served_in(pipeline, 0))) == everything
    assert pipeline.epoch == 2


def test_fit_on_pipeline_advances_epoch():
    # Without EpochSync, the extra on_epoch_end() Keras makes at the start of
    # fit() shifts the epochs by one, on every backend alike.
    ds = load_dataset("digits")
    pipeline = _fit(ds)
    everything = list(range(len(pipeline)))
    assert _served_in(pipeline, 1) == everything
    assert _served_in(pipeline, 2) == everything
    assert pipeline.epoch == 3


@pytest.mark.once_per_suite
def test_padded_batches_of_no_images_rescale_nothing():
    # --validation-split 0 on several devices: an empty validation split, whose
    # loss scale (padded over real images) must not divide by zero.
    source = BatchPipeline(np.zeros((0, 2, 2, 1)), np.zeros(0, int), 4, mean=[0.0], std=[1.0])
    padded = data.PaddedBatches(source, 4, images=0)
    assert len(padded) == 0 and padded.loss_scale == 1.0
