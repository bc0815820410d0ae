"""What mid-epoch checkpoints cost: `python3 benchmarks/checkpoint_overhead.py`.

ResNet-18 on CIFAR shapes (32x32x3, 10 classes), trained by `fit` with the
paper recipe's optimizer and CRL, one intra-op thread per framework. In one
process per backend, epochs of `--steps` steps alternate, repeat by repeat
(the order reversed every other repeat), between `StateCheckpoint` saving
only at the epoch's end (as every run does) and `StateCheckpoint` also
saving every `--every` steps inside the epoch. The measured ratio is the
median over repeats of (epoch time with mid-epoch saves) / (without) - 1 at
that frequency. Each save is also timed, and the overhead at the default
frequency (`--checkpoint-every 10min`) is that cost over 600 s of training.

Writes `benchmarks/results/checkpoint_overhead.json` and `.md`.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_SECONDS = 600.0  # keras_crl.cli.CHECKPOINT_EVERY, "10min"


def worker(args):
    import keras
    import numpy as np

    from keras_crl.callbacks import StateCheckpoint
    from keras_crl.loss_factory import make_loss
    from keras_crl.models import get_model
    from keras_crl.recipes import TorchSGD
    from keras_crl.reproducible import numpy_initialise

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch * args.steps, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, len(x)).astype("int32")
    model = get_model("resnet18", num_classes=10, input_shape=(32, 32, 3))
    numpy_initialise(model, 0)
    model.compile(
        optimizer=TorchSGD(0.1, momentum=0.9, l2=5e-4),
        loss=make_loss("crl"),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    folder = tempfile.mkdtemp()
    saves = []

    class Timed(StateCheckpoint):
        def _save(self, epoch, step):
            start = time.perf_counter()
            super()._save(epoch, step)
            saves.append(time.perf_counter() - start)

    def epoch(every):
        checkpoint = Timed(os.path.join(folder, "state.npz"), args.steps, every_steps=every)
        start = time.perf_counter()
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0, callbacks=[checkpoint])
        return time.perf_counter() - start

    epoch(args.every)  # compile, build the optimizer, first save
    saves.clear()
    ratios, times = [], {"with": [], "without": []}
    for repeat in range(args.repeats):
        order = [args.every, None] if repeat % 2 == 0 else [None, args.every]
        measured = {every: epoch(every) for every in order}
        times["with"].append(measured[args.every])
        times["without"].append(measured[None])
        ratios.append(measured[args.every] / measured[None] - 1)
    save_seconds = statistics.median(saves)
    step_seconds = statistics.median(times["without"]) / args.steps
    mid_saves = len(range(args.every, args.steps, args.every))
    return {
        "backend": keras.backend.backend(),
        "state_megabytes": os.path.getsize(os.path.join(folder, "state.npz")) / 2**20,
        "steps_per_epoch": args.steps,
        "every_steps": args.every,
        "mid_epoch_saves_per_epoch": mid_saves,
        "batch": args.batch,
        "repeats": args.repeats,
        "epoch_seconds_with": times["with"],
        "epoch_seconds_without": times["without"],
        "overhead_at_every_steps": statistics.median(ratios),
        "save_seconds_median": save_seconds,
        "step_seconds_median": step_seconds,
        "overhead_at_default_10min": save_seconds / DEFAULT_SECONDS,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,jax,tensorflow")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="steps per epoch")
    parser.add_argument("--every", type=int, default=2, help="mid-epoch save every N steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0
    sys.path.insert(0, ROOT)
    from keras_crl.backends import thread_env

    results = []
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        env.update(thread_env(args.threads))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        command = [sys.executable, __file__, "--worker", backend, *(argv or sys.argv[1:])]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
        if done.returncode:
            raise SystemExit(f"{backend} worker failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    record = {
        "results": results,
        "threads": args.threads,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average": os.getloadavg(),
            "shared": "other engineers' jobs ran on the machine during the measurement",
        },
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "checkpoint_overhead.json"), "w") as f:
        json.dump(record, f, indent=2)
    lines = [
        "# Checkpoint overhead (ResNet-18, CIFAR shapes)",
        "",
        f"{args.threads} intra-op thread(s), batch {args.batch}, {args.steps} steps per epoch, "
        f"{args.repeats} interleaved repeats; load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores (shared machine).",
        "",
        "| backend | state.npz MB | save s | step s | overhead, save every "
        f"{args.every} steps (measured) | overhead at the 10min default |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['backend']} | {r['state_megabytes']:.0f} | {r['save_seconds_median']:.3f} | "
            f"{r['step_seconds_median']:.2f} | {100 * r['overhead_at_every_steps']:.1f} % | "
            f"{100 * r['overhead_at_default_10min']:.3f} % |"
        )
    with open(os.path.join(args.out, "checkpoint_overhead.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
