"""Minimal reproductions of where a Keras train step loses to plain PyTorch.

    python3 benchmarks/gaps.py            every backend, writes results/gaps.{json,md}
    python3 benchmarks/gaps.py --quick    the suite's smoke run (tiny shapes)

One layer at a time, forward + backward (gradients with respect to the input
and the weights) on a ResNet-18 CIFAR activation (batch 64, 32 x 32, 64
channels): Keras' `Conv2D(64, 3, padding="same", use_bias=False)` and
`BatchNormalization()` in training mode, on each backend in the mode the CLI
trains it in (torch eager, JAX `jax.jit`, TensorFlow `tf.function` graph, and
XLA as well), against `torch.nn.Conv2d` / `torch.nn.BatchNorm2d` in NCHW, the
layout plain PyTorch uses, timed interleaved in the same process with every
core. No keras-crl code runs here: what this measures is inside Keras, XLA or
the framework (see benchmarks/README.md, "Where the train step goes").
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BACKENDS = ("tensorflow", "torch", "jax")


def keras_step(layer_name, shape, mode):
    """`f()` running forward + backward of one Keras layer, synchronised."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    x_np = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = (
        keras.layers.Conv2D(shape[-1], 3, padding="same", use_bias=False)
        if layer_name == "conv"
        else keras.layers.BatchNormalization()
    )
    layer.build(shape)
    if backend == "torch":
        import torch

        x = torch.tensor(x_np, requires_grad=True)
        weights = [v.value for v in layer.trainable_variables]

        def step():
            y = layer(x, training=True)
            return torch.autograd.grad((y * y).sum(), [x] + weights)

        return step
    if backend == "jax":
        import jax

        x = jax.numpy.asarray(x_np)
        trainable = [v.value for v in layer.trainable_variables]
        others = [v.value for v in layer.non_trainable_variables]

        # stateless_call reaches `call` directly: only BatchNormalization's
        # takes `training`.
        kwargs = {"training": True} if layer_name == "batch_norm" else {}

        def loss(x, trainable):
            y, _ = layer.stateless_call(trainable, others, x, **kwargs)
            return (y * y).sum()

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
        return lambda: jax.block_until_ready(grad(x, trainable))
    import tensorflow as tf

    x = tf.constant(x_np)

    @tf.function(jit_compile=mode == "jit")
    def grad():
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            value = tf.reduce_sum(y * y)
        return tape.gradient(value, [x] + layer.trainable_variables)

    return lambda: [g.numpy() for g in grad()]


def torch_step(layer_name, shape):
    import numpy as np
    import torch

    batch, height, width, channels = shape
    x_np = np.random.default_rng(0).normal(size=(batch, channels, height, width))
    x = torch.tensor(x_np.astype("float32"), requires_grad=True)
    layer = (
        torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        if layer_name == "conv"
        else torch.nn.BatchNorm2d(channels)
    ).train()
    weights = list(layer.parameters())

    def step():
        y = layer(x)
        return torch.autograd.grad((y * y).sum(), [x] + weights)

    return step


def worker(backend, shape, repeats):
    import keras

    assert keras.backend.backend() == backend
    modes = {"torch": ["eager"], "jax": ["jit"], "tensorflow": ["graph", "jit"]}[backend]
    rows = []
    for layer_name in ("conv", "batch_norm"):
        for mode in modes:
            steps = [keras_step(layer_name, shape, mode), torch_step(layer_name, shape)]
            for step in steps:  # compile, warm up
                step(), step()
            times = [[], []]
            for repeat in range(repeats):
                order = (0, 1) if repeat % 2 == 0 else (1, 0)
                for i in order:
                    start = time.perf_counter()
                    steps[i]()
                    times[i].append(time.perf_counter() - start)
            keras_ms, torch_ms = (statistics.median(t) * 1e3 for t in times)
            ratios = [t / k for k, t in zip(*times)]
            rows.append(
                dict(
                    backend=backend,
                    layer=layer_name,
                    mode=mode,
                    keras_ms=keras_ms,
                    torch_ms=torch_ms,
                    speed_vs_torch=statistics.median(ratios),
                )
            )
            print(f"  {backend} {mode} {layer_name}: {rows[-1]['speed_vs_torch']:.2f}x", flush=True)
    return rows


def markdown(report):
    lines = [
        "# Per-layer gaps to plain PyTorch",
        "",
        f"`python3 benchmarks/gaps.py`, {report['date']}, {report['threads']} threads per "
        f"framework, input {report['shape']} (NHWC for Keras, NCHW for PyTorch), "
        "forward + backward in training mode, medians of interleaved repeats. "
        "`vs PyTorch` > 1 means Keras is faster.",
        "",
        "| Backend | Mode | Layer | Keras (ms) | PyTorch (ms) | Keras vs PyTorch |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['backend']} | {r['mode']} | {r['layer']} | {r['keras_ms']:.1f} | "
            f"{r['torch_ms']:.1f} | {r['speed_vs_torch']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, no files written")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape = (2, 8, 8, 4) if args.quick else (64, 32, 32, 64)
    repeats = 2 if args.quick else 9
    if args.worker:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
        print(json.dumps(worker(args.worker, shape, repeats)))
        return

    sys.path.insert(0, os.path.dirname(HERE))
    from keras_crl.backends import thread_env

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **thread_env(args.threads))
    rows = []
    for backend in args.backends:
        print(f"== {backend}", flush=True)
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--worker", backend]
            + (["--quick"] if args.quick else []),
            env=dict(env, KERAS_BACKEND=backend),
            capture_output=True,
            text=True,
        )
        sys.stderr.write(proc.stderr[-2000:] if proc.returncode else "")
        if proc.returncode:
            raise SystemExit(f"{backend} worker failed (exit {proc.returncode})")
        rows += json.loads(proc.stdout.strip().splitlines()[-1])
    report = dict(
        date=time.strftime("%Y-%m-%d %H:%M"), threads=args.threads, shape=shape, rows=rows
    )
    text = markdown(report)
    print(text)
    if not args.quick:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "gaps.json"), "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.join(args.out, "gaps.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
