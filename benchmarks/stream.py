"""Streaming image-folder throughput: `python3 benchmarks/stream.py`.

Generates a folder of ImageNet-sized JPEGs (500 x 375, quality 90, smooth
random content), then measures decoded + augmented 224 px images per second
(random resized crop + flip, normalised float32 batches of 32):

- `FolderStream` through Keras' own `PyDataset` adapter (what `fit` runs)
  with 0 workers (in the training process), 1 and 2 worker processes;
- the same per-image work as a grain `MapDataset` with `mp_prefetch` and 1
  and 2 workers, when grain is installed (it is not a dependency);
- a ResNet-50 training step (`keras.applications.ResNet50`, 1000 classes,
  batch 32, SGD, all cores) on the current backend, and the ratio of the
  pipeline's images/s to the step's.

Writes `benchmarks/results/stream.json` and `stream.md`. `--quick` is the
smoke run of the test suite (a tiny folder, 0 workers, no ResNet-50).
"""

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def machine():
    """benchmarks/run.py's description of the machine (it imports every backend)."""
    sys.path.insert(0, HERE)
    try:
        from run import machine as describe
    finally:
        sys.path.remove(HERE)
    return describe()


SETTINGS = {
    # (workers, use_multiprocessing): 0 workers decode in the training
    # process; threads share it (Pillow and NumPy release the GIL); processes
    # send each batch back through a pipe.
    "default": dict(
        files=320,
        shape=(375, 500),
        size=224,
        batch=32,
        modes=[(0, False), (2, False), (1, True), (2, True)],
        repeats=3,
        resnet_steps=4,
    ),
    "quick": dict(
        files=8, shape=(40, 48), size=32, batch=4, modes=[(0, False)], repeats=1, resnet_steps=0
    ),
}


def make_jpeg_folder(root, files, classes=4, shape=(375, 500), seed=0):
    """Writes `files` smooth random JPEGs (height x width `shape`) in `classes` folders."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class{c}"), exist_ok=True)
    for i in range(files):
        # Low-resolution noise upsampled, plus fine noise: decodes like a
        # photograph rather than like flat colour or pure noise.
        coarse = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        image = np.asarray(coarse.resize(shape[::-1], Image.Resampling.BICUBIC), np.int16)
        image = image + rng.integers(-12, 13, image.shape)
        path = os.path.join(root, f"class{i % classes}", f"{i:06d}.jpg")
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
    return root


def stream_images_per_second(folder, size, batch, *, workers, processes, max_queue_size=4):
    """Images/s of one epoch of `FolderStream` through Keras' PyDataset adapter."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from keras_crl.data.folder_stream import load_stream_folder

    ds = load_stream_folder(
        folder, size, validation_split=0.0, test_split=0.0, workers=workers,
        use_multiprocessing=processes, max_queue_size=max_queue_size,
    )  # fmt: skip
    stream = ds.pipeline("train", batch, augment=True, shuffle=True, seed=0, drop_remainder=True)
    adapter = PyDatasetAdapter(stream, shuffle=False)
    # Epoch 0 warms the page cache and starts nothing timed.
    for _ in adapter.get_numpy_iterator():
        pass
    adapter.on_epoch_end()
    stream.epoch = 1
    start = time.perf_counter()
    images = 0
    for x, _ in adapter.get_numpy_iterator():
        images += len(x)
    return images / (time.perf_counter() - start)


def grain_images_per_second(folder, size, batch, *, workers):
    """The same per-image work as a grain MapDataset with `workers` processes."""
    import grain
    from absl import flags

    # grain reads absl flags, which only an absl app would have parsed.
    flags.FLAGS.mark_as_parsed()

    from keras_crl.data.folder_stream import load_stream_folder

    ds = load_stream_folder(folder, size, validation_split=0.0, test_split=0.0, workers=0)
    stream = ds.pipeline("train", batch, augment=True, shuffle=True, seed=0)
    files, labels = stream.files, stream.labels

    def load(i):
        rng = np.random.default_rng([0, 1, 0x4147, int(i)])
        return stream.load(files[i], rng), labels[i]

    def normalise(pair):
        return stream._normalise(*pair)

    dataset = (
        grain.MapDataset.range(len(files))
        .shuffle(seed=0)
        .map(load)
        .batch(batch, drop_remainder=True)
        .map(normalise)
        .to_iter_dataset()
        .mp_prefetch(grain.multiprocessing.MultiprocessingOptions(num_workers=workers))
    )
    for _ in dataset:  # warm-up epoch, as for the stream
        pass
    start = time.perf_counter()
    images = sum(len(x) for x, _ in dataset)
    return images / (time.perf_counter() - start)


def resnet50_images_per_second(batch, steps):
    """Images/s of ResNet-50 training steps on random 224 px data (current backend)."""
    import keras

    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=1000)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=False),
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 224, 224, 3)).astype(np.float32)
    y = rng.integers(0, 1000, batch)
    model.train_on_batch(x, y)  # compile
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return batch * steps / (time.perf_counter() - start)


def markdown(results):
    s, m = results["settings"], results["machine"]
    lines = [
        "# Streaming image folder: decode + augment throughput",
        "",
        f"{s['files']} JPEGs of {s['shape'][1]} x {s['shape'][0]} (quality 90), random "
        f"resized crop + flip to {s['size']} px, normalised float32 batches of "
        f"{s['batch']}. Machine: {m['cpu']}, "
        f"{m['cores']} cores, load average {m['load_average']}, shared with other jobs "
        "while measured. Every worker decodes with one thread (Pillow); the "
        "ResNet-50 step uses all cores.",
        "",
        "| loader | workers | images/s (median) | repeats |",
        "|---|---|---|---|",
    ]
    for row in results["loaders"]:
        repeats = ", ".join(f"{r:.0f}" for r in row["repeats"])
        lines.append(
            f"| {row['loader']} | {row['workers']} | {row['images_per_second']:.1f} | {repeats} |"
        )
    if results.get("resnet50_images_per_second"):
        lines += [
            "",
            f"ResNet-50 training step ({results['backend']}, batch {s['batch']}, CPU, all "
            f"{m['cores']} cores): {results['resnet50_images_per_second']:.1f} images/s.",
            "",
            "| workers | pipeline / ResNet-50 step |",
            "|---|---|",
        ]
        for row in results["loaders"]:
            if row["loader"] == "FolderStream":
                lines.append(f"| {row['workers']} | {row['ratio_to_resnet50']:.2f} x |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny folder, no ResNet")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--no-grain", action="store_true")
    args = parser.parse_args(argv)
    settings = SETTINGS["quick" if args.quick else "default"]
    import keras

    # machine() imports every backend for its version: seconds, not for --quick.
    about = {"cpu": "-", "cores": os.cpu_count(), "load_average": None} if args.quick else machine()
    results = {"settings": settings, "machine": about, "backend": keras.backend.backend()}
    measures = []  # (loader, workers, function)
    for workers, processes in settings["modes"]:
        kind = "processes" if processes else "threads" if workers else "in-process"
        measure = functools.partial(stream_images_per_second, workers=workers, processes=processes)
        measures.append(("FolderStream", f"{workers} {kind}", measure))
    if not args.quick and not args.no_grain:
        try:
            import grain  # noqa: F401

            for workers in (1, 2):
                measure = functools.partial(grain_images_per_second, workers=workers)
                measures.append(("grain", f"{workers} processes", measure))
        except ImportError:
            pass
    rates = {name: [] for name in measures}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_jpeg_folder(
            os.path.join(tmp, "jpegs"), settings["files"], shape=settings["shape"]
        )
        # Round robin, so that a busy moment of the shared machine does not
        # fall on one loader only; the median of the repeats is reported.
        for _ in range(settings["repeats"]):
            for name in measures:
                rates[name].append(name[2](folder, settings["size"], settings["batch"]))
                print(name[:2], rates[name][-1], flush=True)
    loaders = [
        {
            "loader": loader,
            "workers": workers,
            "images_per_second": statistics.median(rates[(loader, workers, f)]),
            "repeats": rates[(loader, workers, f)],
        }
        for loader, workers, f in measures
    ]
    results["loaders"] = loaders
    if settings["resnet_steps"]:
        step = resnet50_images_per_second(settings["batch"], settings["resnet_steps"])
        results["resnet50_images_per_second"] = step
        for row in loaders:
            row["ratio_to_resnet50"] = row["images_per_second"] / step
        print({"resnet50_images_per_second": step}, flush=True)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "stream.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(args.out_dir, "stream.md"), "w") as f:
        f.write(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
