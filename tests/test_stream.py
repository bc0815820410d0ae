"""The streaming image folder (keras_crl.data.stream), on the current backend.

One generated folder of 2000 small JPEGs serves the other tests. Determinism is
checked through Keras' own PyDataset adapter (what `fit` runs) with worker
processes. Memory is the peak resident size while a folder of larger JPEGs
streams, in a process of its own (tests.memory_probe).
"""

import importlib.util
import json
import os
import shutil

import keras
import numpy as np
import pytest
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

from keras_crl.data import FolderStream
from keras_crl.data import StreamingFolder
from keras_crl.data import load_dataset
from keras_crl.data.augment import random_resized_crop_box
from keras_crl.data.folder_stream import load_stream_folder
from tests import memory_probe
from tests.backend_utils import batch_digest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES, CLASSES = 2000, 4


@pytest.fixture(scope="session")
def jpeg_folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (64, 8, 10, 3), dtype=np.uint8)
    for c in range(CLASSES):
        (root / f"class{c}").mkdir()
    for i in range(FILES):
        # 48 x 40 JPEGs, tiles upscaled so that crops differ visibly.
        image = Image.fromarray(tiles[i % 64]).resize((48, 40), Image.Resampling.BILINEAR)
        image.save(root / f"class{i % CLASSES}" / f"{i:05d}.jpg", quality=85)
    return str(root)


def _stream(folder, limit=None, **options):
    ds = load_stream_folder(folder, 16, validation_split=0.0, test_split=0.0, workers=0)
    options = {"augment": True, "shuffle": True, "seed": 3, **options}
    return ds.pipeline("train", 16, limit=limit, **options)


def _epoch_digests(stream, epoch):
    """Digests of one epoch's batches, read as `fit` reads them."""
    stream.epoch = epoch
    adapter = PyDatasetAdapter(stream, shuffle=False)
    adapter.on_epoch_begin()
    digests = [batch_digest(x, y) for x, y in adapter.get_numpy_iterator()]
    adapter.on_epoch_end()
    return digests


class TestListing:
    def test_splits_partition_the_folder(self, jpeg_folder):
        ds = load_dataset("folder_stream", data_dir=jpeg_folder, image_size=16, test_split=0.2)
        assert isinstance(ds, StreamingFolder)
        splits = [ds.files_train, ds.files_val, ds.files_test]
        assert [len(s) for s in splits] == [1440, 160, 400]
        assert len(set().union(*splits)) == FILES
        assert ds.input_shape == (16, 16, 3) and ds.num_classes == CLASSES

    def test_labels_are_checked_on_the_host(self):
        with pytest.raises(ValueError, match="label 7 is outside"):
            FolderStream(["a.jpg"], [7], 1, num_classes=4)

    def test_random_resized_crop_box_stays_inside(self):
        rng = np.random.default_rng(0)
        for width, height in [(48, 40), (500, 375), (30, 300)]:
            for _ in range(200):
                left, top, right, bottom = random_resized_crop_box(width, height, rng)
                assert 0 <= left < right <= width and 0 <= top < bottom <= height


class TestDeterminism:
    def test_same_batches_in_process_and_with_1_or_2_workers(self, jpeg_folder):
        digests = []
        # In the training process, 2 threads, 1 and 2 processes.
        for workers, processes in [(1, False), (2, False), (1, True), (2, True)]:
            stream = _stream(jpeg_folder, limit=96, workers=workers, use_multiprocessing=processes)
            digests.append(_epoch_digests(stream, epoch=2))
        assert len(digests[0]) == 6
        assert all(d == digests[0] for d in digests)

    def test_epochs_differ_in_order_and_in_augmentation(self, jpeg_folder):
        stream = _stream(jpeg_folder, limit=64)
        assert not set(_epoch_digests(stream, 0)) & set(_epoch_digests(stream, 1))
        # Without shuffling only the augmentation can tell the epochs apart.
        fixed = _stream(jpeg_folder, limit=64, shuffle=False)
        np.testing.assert_array_equal(fixed.indices(0, 0), fixed.indices(0, 1))
        fixed.epoch = 0
        x0 = fixed[0][0]
        fixed.epoch = 1
        assert not np.array_equal(x0, fixed[0][0])

    def test_evaluation_is_not_random(self, jpeg_folder):
        stream = _stream(jpeg_folder, limit=32, augment=False, shuffle=False)
        assert _epoch_digests(stream, 0) == _epoch_digests(stream, 5)

    def test_shard_reads_only_its_slice_of_the_global_batch(self, jpeg_folder, monkeypatch):
        whole = _stream(jpeg_folder, limit=64)
        whole.epoch = 4
        x, y = whole[1]
        read = []
        original = FolderStream.load
        monkeypatch.setattr(
            FolderStream, "load", lambda self, f, rng: read.append(f) or original(self, f, rng)
        )
        for k in range(4):
            shard = _stream(jpeg_folder, limit=64, shard_index=k, shard_count=4)
            shard.epoch = 4
            read.clear()
            xs, ys = shard[1]
            expected = [whole.files[i] for i in whole.indices(1)[4 * k : 4 * k + 4]]
            assert read == expected  # this shard decoded its four files only
            np.testing.assert_array_equal(xs, x[4 * k : 4 * k + 4])
            np.testing.assert_array_equal(ys, y[4 * k : 4 * k + 4])

    def test_a_sharded_stream_is_fed_as_it_is(self, jpeg_folder, monkeypatch):
        # In process 1 of 2, parallel.shard slices an in-memory pipeline's
        # global batches, but feeds a stream that reads its own share as is.
        from keras_crl import parallel

        monkeypatch.setattr(
            parallel.sharding, "this_process", lambda: parallel.Process(1, 2, False)
        )
        own = _stream(jpeg_folder, limit=64, shard_index=1, shard_count=2)
        assert parallel.shard(own) is own
        whole = _stream(jpeg_folder, limit=64)
        assert isinstance(parallel.shard(whole), parallel.ShardBatches)

    def test_shards_must_split_the_batch_evenly(self, jpeg_folder):
        with pytest.raises(ValueError, match="3 equal shards"):
            _stream(jpeg_folder, limit=64, shard_count=3)


@pytest.fixture(scope="module")
def broken_folder(jpeg_folder, tmp_path_factory):
    """12 JPEGs per class, all of class2 truncated mid-scan: (folder, bad files)."""
    folder = tmp_path_factory.mktemp("broken")
    for c in range(CLASSES):
        shutil.copytree(
            os.path.join(jpeg_folder, f"class{c}"),
            folder / f"class{c}",
            ignore=lambda d, names: sorted(names)[12:],
        )
    bad = sorted((folder / "class2").iterdir())
    for file in bad:
        file.write_bytes(file.read_bytes()[:300])
    return str(folder), [str(file) for file in bad]


def test_corrupt_file_mid_stream_names_its_path(broken_folder):
    folder, bad = broken_folder
    stream = _stream(folder, workers=2, use_multiprocessing=True, shuffle=False)
    stream.epoch = 0
    stream[0]  # the first batch, of class0 and class1, is fine
    with pytest.raises(ValueError, match="Corrupt or truncated image ") as info:
        _epoch_digests(stream, 0)
    # Keras' enqueuer may re-raise a later batch's error while draining its
    # queue, so the file named is one of the corrupt ones, not always the first.
    assert _named_file(str(info.value)) in bad, info.value


def _named_file(message):
    return message.split("Corrupt or truncated image ", 1)[-1].split(": ")[0]


def test_cli_stops_on_a_corrupt_file_with_one_line(broken_folder, tmp_path, capsys):
    from keras_crl import cli

    folder, bad = broken_folder
    status = cli.main(
        ["train", "--dataset", "folder_stream", "--data-dir", folder, "--image-size", "16"]
        + ["--epochs", "1", "--batch-size", "16", "--data-workers", "2", "--verbose", "0"]
        + ["--run-dir", str(tmp_path / "run")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert err[-1].startswith("keras-crl train: error: Corrupt or truncated image ")
    assert _named_file(err[-1]) in bad, err[-1]


def test_memory_is_bounded_by_the_prefetch_window(tmp_path):
    files, width, height = 1000, 320, 240
    size, batch = 224, memory_probe.STREAM_BATCH
    batch_bytes = batch * size * size * 3 * 4
    # Two batches queued, two being made, one being read, one in transit;
    # the margin covers the thread pool, the images being decoded and
    # allocator slack. Measured: 19 MB.
    ceiling = 6 * batch_bytes + 40 * 2**20
    # Holding the folder, decoded at its own size (what the in-memory folder
    # does: 230 MB) or as output images (150 MB), breaks the ceiling twice over.
    assert 2 * ceiling < files * width * height * 3
    assert 2 * ceiling < files * size * size * 3
    folder = memory_probe.write_jpegs(tmp_path / "jpegs", files, width, height)
    probe = memory_probe.measure("folder_stream", folder, size)
    assert probe["images"] == files
    assert probe["growth"] < ceiling, (probe, ceiling)


def test_trains_through_the_stream(jpeg_folder, tmp_path, monkeypatch):
    from keras_crl.train import TrainConfig
    from keras_crl.train import train

    made = []
    original = StreamingFolder.pipeline
    monkeypatch.setattr(
        StreamingFolder,
        "pipeline",
        lambda self, split, *a, **k: (
            made.append((split, original(self, split, *a, **k))) or made[-1][1]
        ),
    )
    config = TrainConfig(
        model="small_cnn",
        dataset="folder_stream",
        data_dir=jpeg_folder,
        dataset_options={"image_size": 32, "workers": 2, "test_split": 0.05},
        epochs=1,
        batch_size=32,
        limit=256,
        learning_rate=0.01,
        run_dir=str(tmp_path / "run"),
        verbose=0,
    )
    metrics = train(config)
    streams = dict(made)
    assert sorted(streams) == ["test", "train", "val"]
    assert len(streams["train"]) == 256 // 32 and streams["train"].augment
    assert streams["train"].workers == 2  # threads, the default
    assert streams["train"].epoch == 1  # epoch 0 trained, then advanced
    assert metrics["test_images"] == 100 and np.isfinite(metrics["test_loss"])
    assert metrics["backend"] == keras.backend.backend()
    described = json.loads((tmp_path / "run" / "config.json").read_text())
    assert described["dataset"]["input_shape"] == [32, 32, 3]
    assert described["dataset"]["train"] == 256


def test_cli_flags_make_a_streaming_config():
    from keras_crl.cli import build_parser
    from keras_crl.cli import config_from_args
    from keras_crl.config import check_config

    args = build_parser().parse_args(
        ["train", "--dataset", "folder_stream", "--data-dir", "/d", "--image-size", "64"]
        + ["--data-workers", "3"]
    )
    config = config_from_args(args, "runs/x")
    assert config.dataset == "folder_stream" and config.data_dir is None
    assert config.dataset_options == {"image_size": (64, 64), "path": "/d", "workers": 3}
    with pytest.raises(ValueError, match="folder_stream needs --data-dir"):
        config_from_args(build_parser().parse_args(["train", "--dataset", "folder_stream"]), "r")
    # The config check refuses it for a data set without workers (the
    # command line names the flag: tests/test_cli_promises.py).
    digits = config_from_args(build_parser().parse_args(["train", "--data-workers", "2"]), "r")
    with pytest.raises(ValueError, match="workers=2: does not apply to dataset digits"):
        check_config(digits)


def test_benchmark_script_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "bench_stream", os.path.join(ROOT, "benchmarks", "stream.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out-dir", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "stream.json").read_text())["loaders"]
    assert rows[0]["loader"] == "FolderStream" and rows[0]["images_per_second"] > 0
    assert "| FolderStream | 0 in-process |" in (tmp_path / "stream.md").read_text()
