"""The peak memory of reading an image folder, measured in a fresh process.

    python -m tests.memory_probe folder DIR IMAGE_SIZE
    python -m tests.memory_probe folder_stream DIR IMAGE_SIZE

`folder` loads DIR into memory as `train()` does (`load_dataset`, the three
splits' pipelines and one augmented training batch); `folder_stream` streams
every image of DIR once in batches of `STREAM_BATCH`, through Keras' own
PyDataset adapter with two worker threads. Prints one JSON line: `growth`,
the peak resident size above the resident size once everything is imported,
in bytes; `images`, the images read; `pixels`, the bytes of the in-memory
splits as `uint8`.

Why the resident size, in a process of its own: it is what a user sees and
what the system runs out of, and it counts every allocation (PIL's decode
buffers, any C library), where tracemalloc sees only what NumPy and Python
report to it. A fresh process has no freed heap from earlier tests that a
regression could reuse unseen, and writing 5 to /proc/self/clear_refs
resets the peak (VmHWM) after the imports, so their transient memory is not
counted.
"""

import json
import os
import subprocess
import sys

import keras  # noqa: F401  (imported before the baseline, as the package is)
import numpy as np
from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter
from PIL import Image
from PIL import JpegImagePlugin  # noqa: F401  (PIL loads it on the first JPEG)

from keras_crl.data import load_dataset
from keras_crl.data.folder_stream import load_stream_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STREAM_BATCH = 4


def write_jpegs(root, count, width, height, classes=4):
    """Writes `count` JPEGs of `width` x `height` into `classes` class folders.

    Returns:
        `root`, as a string.
    """
    rng = np.random.default_rng(0)
    # Tiles upscaled: smooth images, small files, quick to write and read.
    tiles = rng.integers(0, 256, (16, height // 8, width // 8, 3), dtype=np.uint8)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
    for i in range(count):
        image = Image.fromarray(tiles[i % 16]).resize((width, height), Image.Resampling.BILINEAR)
        image.save(os.path.join(root, f"class{i % classes}", f"{i:05d}.jpg"), quality=85)
    return str(root)


def measure(kind, folder, size):
    """Runs this probe in a fresh process on this tree; returns its JSON."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run(
        [sys.executable, "-m", "tests.memory_probe", kind, str(folder), str(size)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def status_bytes(field):
    """A size from /proc/self/status (`VmRSS`, `VmHWM`), in bytes."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def in_memory(folder, size):
    ds = load_dataset("folder", data_dir=folder, image_size=size)
    train = ds.pipeline("train", 4, augment=True, shuffle=True, seed=0)
    for split in ("val", "test"):
        ds.pipeline(split, 4)
    train[0]
    splits = (ds.x_train, ds.x_val, ds.x_test)
    return sum(len(x) for x in splits), sum(x.size for x in splits)


def streamed(folder, size):
    ds = load_stream_folder(
        folder, size, validation_split=0.0, test_split=0.0, workers=2, max_queue_size=2
    )
    stream = ds.pipeline("train", STREAM_BATCH, augment=True, shuffle=True, seed=0)
    adapter = PyDatasetAdapter(stream, shuffle=False)
    return sum(len(x) for x, _ in adapter.get_numpy_iterator()), 0


def main(kind, folder, size):
    Image.init()
    np.zeros(1).sum()
    before = status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current resident size
    images, pixels = {"folder": in_memory, "folder_stream": streamed}[kind](folder, int(size))
    growth = status_bytes("VmHWM") - before
    print(json.dumps({"growth": growth, "images": images, "pixels": pixels}))


if __name__ == "__main__":
    main(*sys.argv[1:])
