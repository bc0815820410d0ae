"""Benchmarks of keras-crl on every Keras backend: `python3 benchmarks/run.py`.

Keras picks its backend at import, so this script spawns one worker process
per backend (`KERAS_BACKEND=b python3 benchmarks/run.py --worker b ...`), each
writing a JSON file, then merges them into `benchmarks/results/results.json`
and `results.md`. Every ratio is measured inside one process, the two sides
interleaved repeat by repeat, and reported as the median of the repeats.

Sections (see benchmarks/README.md): `loss` (CRL vs cross-entropy, forward +
backward), `train` (ResNet-18 step with CRL vs CE, and vs plain PyTorch),
`memory` (peak extra memory of CRL over CE), `pipeline` (BatchPipeline
images/s vs what the fastest training step consumes).
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

from keras_crl.backends import BACKENDS
from keras_crl.backends import thread_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The goals of issue #14. Loss: CRL forward + backward over Keras'
# cross-entropy's, under jit (XLA) at every size, and on torch eager (the
# mode Keras trains torch in) by label kind; TensorFlow and JAX eager are
# reported without a goal. Training step: CRL over CE, and each backend in
# the mode the CLI picks for it against plain PyTorch (eager and, reported,
# torch.compile), the best backend higher still.
GOALS = {
    "loss_jit": 1.10,
    "loss_torch_integer": 1.5,
    "loss_torch_one_hot": 2.5,
    "train": 1.02,
    "vs_torch_each": 0.90,
    "vs_torch_best": 1.10,
    "memory": 0.05,
    "pipeline": 5.0,
}


def cli_mode(backend, gpu):
    """The train-step mode `keras-crl train` runs (`--jit auto`, Keras' choice).

    Keras' "auto" compiles with XLA on JAX always and on TensorFlow only with
    a GPU (graph mode on a CPU); torch runs eagerly.
    """
    if backend == "tensorflow":
        return "jit" if gpu else "graph"
    return {"torch": "eager", "jax": "jit"}[backend]


# Default and --quick settings. `loss_sizes` are (batch, classes).
SETTINGS = {
    "default": dict(
        loss_sizes=[(256, 10), (256, 100), (1024, 1000)],
        loss_repeats=9,
        loss_target_s=0.03,
        train_batch=64,
        train_repeats=4,
        memory_sizes=[(256, 100_000), (1024, 100_000)],
        pipeline_batches=20,
        tf_graph=True,
        compiled=True,
    ),
    "quick": dict(
        loss_sizes=[(256, 10)],
        loss_repeats=3,
        loss_target_s=0.01,
        train_batch=8,
        train_repeats=2,
        memory_sizes=[(256, 20_000)],
        pipeline_batches=4,
        tf_graph=False,
        compiled=False,  # torch.compile takes tens of seconds
    ),
}


# ---------------------------------------------------------------------------
# Small helpers (tested in tests/test_benchmarks.py).


def median_ratio(numerators, denominators):
    """Median of the per-repeat ratios of two interleaved timing lists."""
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def interleaved(functions, repeats, number=1, sync=lambda r: r):
    """Times each function `number` times per repeat, alternating them.

    Returns one list of seconds-per-call per function. The order inside a
    repeat alternates so that neither side always runs first.
    """
    times = [[] for _ in functions]
    for r in range(repeats):
        order = range(len(functions)) if r % 2 == 0 else reversed(range(len(functions)))
        for i in order:
            start = time.perf_counter()
            for _ in range(number):
                out = functions[i]()
            sync(out)
            times[i].append((time.perf_counter() - start) / number)
    return times


def calls_for(function, target_s, sync=lambda r: r, cap=2000):
    """How many calls make a timing of about `target_s` seconds."""
    start = time.perf_counter()
    sync(function())
    once = max(time.perf_counter() - start, 1e-6)
    return int(min(cap, max(1, round(target_s / once))))


def machine():
    """CPU model, cores, load average, OS and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "os": platform.platform(),
    }
    for name in ("keras", "tensorflow", "torch", "jax", "numpy"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # not installed
            info[name] = None
    return info


def verdict(value, goal, higher_is_better=False):
    if value is None:
        return "n/a"
    met = value >= goal if higher_is_better else value <= goal
    return "met" if met else "missed"


def peak_rss_reset():
    """Resets the process' peak RSS (VmHWM); returns False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_bytes(field):
    """`VmRSS` or `VmHWM` of this process, in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


# ---------------------------------------------------------------------------
# Backend adapters: forward+backward of a loss, device detection, syncing.


def _gpu_available(backend):
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    import torch

    return torch.cuda.is_available()


def _sync(backend):
    if backend == "jax":
        import jax

        return lambda out: jax.block_until_ready(out)
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return lambda out: torch.cuda.synchronize()
        return lambda out: out
    return lambda out: out.numpy() if hasattr(out, "numpy") else out


def _loss_grad(backend, loss, y, z, jit):
    """A function computing d mean-loss / d logits, eager or compiled."""
    if backend == "jax":
        import jax

        grad = jax.grad(lambda logits: loss(y, logits))
        if jit:
            grad = jax.jit(grad)
        return lambda: grad(z)
    if backend == "tensorflow":
        import tensorflow as tf

        def grad(logits):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                value = loss(y, logits)
            return tape.gradient(value, logits)

        if jit:
            compiled = tf.function(grad, jit_compile=True)
            return lambda: compiled(z)
        return lambda: grad(z)
    import torch

    if jit:
        raise ValueError("torch: eager only (torch.compile is not benchmarked)")
    leaf = z.detach().requires_grad_(True)

    def grad():
        (g,) = torch.autograd.grad(loss(y, leaf), leaf)
        return g

    return grad


# ---------------------------------------------------------------------------
# Worker sections.


def bench_loss(backend, cfg):
    import keras
    import numpy as np

    from keras_crl import CompetingRatioLoss

    sync = _sync(backend)
    rows = []
    modes = ["eager"] + (["jit"] if backend != "torch" else [])
    rng = np.random.default_rng(0)
    for batch, classes in cfg["loss_sizes"]:
        z = keras.ops.convert_to_tensor(rng.normal(size=(batch, classes)).astype("float32"))
        labels = rng.integers(0, classes, size=batch)
        for kind in ("integer", "one-hot"):
            if kind == "integer":
                y = keras.ops.convert_to_tensor(labels.astype("int32"))
                ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            else:
                y = keras.ops.convert_to_tensor(np.eye(classes, dtype="float32")[labels])
                ce = keras.losses.CategoricalCrossentropy(from_logits=True)
            crl = CompetingRatioLoss(from_logits=True)
            for mode in modes:
                jit = mode == "jit"
                f_crl = _loss_grad(backend, crl, y, z, jit)
                f_ce = _loss_grad(backend, ce, y, z, jit)
                for f in (f_crl, f_ce):  # warm up / compile
                    sync(f())
                number = calls_for(f_ce, cfg["loss_target_s"], sync)
                t_crl, t_ce = interleaved([f_crl, f_ce], cfg["loss_repeats"], number, sync)
                rows.append(
                    dict(
                        backend=backend,
                        batch=batch,
                        classes=classes,
                        labels=kind,
                        mode=mode,
                        crl_us=statistics.median(t_crl) * 1e6,
                        ce_us=statistics.median(t_ce) * 1e6,
                        ratio=median_ratio(t_crl, t_ce),
                    )
                )
                print(
                    f"  loss {backend} {batch}x{classes} {kind} {mode}: {rows[-1]['ratio']:.2f}x",
                    flush=True,
                )
    return rows


def bench_memory(backend, cfg):
    """Peak RSS during forward+backward, CRL minus CE, integer labels, eager.

    The peak is read from VmHWM after resetting it (`/proc/self/clear_refs`),
    so the number is the true high-water mark of the process, whatever the
    allocator. JAX adds XLA's compiled temp-buffer size of the jitted
    gradient (`memory_analysis()`).
    """
    import gc

    import keras
    import numpy as np

    from keras_crl import CompetingRatioLoss

    if not peak_rss_reset():
        return [dict(backend=backend, error="cannot reset VmHWM (not Linux?)")]
    sync = _sync(backend)
    rows = []
    for batch, classes in cfg["memory_sizes"]:
        rng = np.random.default_rng(0)
        z = keras.ops.convert_to_tensor(rng.normal(size=(batch, classes)).astype("float32"))
        y = keras.ops.convert_to_tensor(rng.integers(0, classes, size=batch).astype("int32"))
        losses = {
            "crl": CompetingRatioLoss(from_logits=True),
            "ce": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        }
        peaks = {name: [] for name in losses}
        for _ in range(2):  # twice each, interleaved; keep the lower peak
            for name, loss in losses.items():
                f = _loss_grad(backend, loss, y, z, jit=False)
                gc.collect()
                base = rss_bytes("VmRSS")
                peak_rss_reset()
                sync(f())
                peaks[name].append(rss_bytes("VmHWM") - base)
                del f
        row = dict(
            backend=backend,
            batch=batch,
            classes=classes,
            crl_peak=min(peaks["crl"]),
            ce_peak=min(peaks["ce"]),
        )
        row["extra"] = row["crl_peak"] - row["ce_peak"]
        row["extra_per_bk"] = row["extra"] / (batch * classes * 4)
        if backend == "jax":
            import jax

            for name, loss in losses.items():
                grad = jax.jit(jax.grad(lambda logits, loss=loss, y=y: loss(y, logits)))
                try:
                    analysis = grad.lower(z).compile().memory_analysis()
                    row[f"{name}_xla_temp"] = int(analysis.temp_size_in_bytes)
                except Exception as e:  # not available on every platform
                    row[f"{name}_xla_temp"] = None
                    row["xla_error"] = repr(e)
        rows.append(row)
        print(
            f"  memory {backend} {batch}x{classes}: extra {row['extra'] / 2**20:.1f} MiB "
            f"({row['extra_per_bk']:.3f} x B*K*4)",
            flush=True,
        )
        del z, y
    return rows


def bench_train(backend, cfg, gpu):
    import keras
    import numpy as np

    from keras_crl import CompetingRatioLoss
    from keras_crl.models import get_model
    from keras_crl.recipes import TorchSGD

    sys.path.insert(0, HERE)
    import torch_reference

    batch = cfg["train_batch"] * (4 if gpu else 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch).astype("int32")
    modes = {
        "jax": ["jit"],
        "torch": ["eager"],
        "tensorflow": (["graph"] if cfg["tf_graph"] else []) + ["jit"],
    }[backend]
    torch_device = "cuda" if gpu and backend == "torch" else "cpu"
    ref_step, _ = torch_reference.make_step(
        batch, 10, "crl", device=torch_device, mixed_precision=gpu
    )
    # The second anchor: the same PyTorch step with its forward, loss and
    # backward through torch.compile (compiled once here, tens of seconds).
    compiled_step, _ = torch_reference.make_step(
        batch, 10, "crl", device=torch_device, mixed_precision=gpu, compiled=cfg["compiled"]
    )
    start = time.perf_counter()
    compiled_step()
    compiled_first_s = time.perf_counter() - start
    import torch

    ref_sync = (lambda r: torch.cuda.synchronize()) if torch_device != "cpu" else (lambda r: r)
    rows = []
    for mode in modes:
        models = {}
        for name, loss in (
            ("crl", CompetingRatioLoss(from_logits=True)),
            ("ce", keras.losses.SparseCategoricalCrossentropy(from_logits=True)),
        ):
            model = get_model("resnet18", num_classes=10, input_shape=(32, 32, 3))
            if models:
                model.set_weights(models["crl"].get_weights())
            model.compile(
                optimizer=TorchSGD(0.1, momentum=0.9, l2=5e-4),
                loss=loss,
                jit_compile=mode == "jit" or (backend == "jax"),
            )
            models[name] = model
        steps = [
            lambda m=m: m.train_on_batch(x, y, return_dict=False)
            for m in (models["crl"], models["ce"])
        ]
        compile_s = []
        for step in steps:
            start = time.perf_counter()
            step()
            compile_s.append(time.perf_counter() - start)
        steps[0](), steps[1](), ref_step(), compiled_step()  # second call: warm caches

        def ref():
            return ref_sync(ref_step())

        def ref_compiled():
            return ref_sync(compiled_step())

        t_crl, t_ce, t_ref, t_compiled = interleaved(
            steps + [ref, ref_compiled], cfg["train_repeats"], 1
        )
        row = dict(
            backend=backend,
            mode=mode,
            batch=batch,
            gpu=gpu,
            crl_s=statistics.median(t_crl),
            ce_s=statistics.median(t_ce),
            torch_s=statistics.median(t_ref),
            first_step_s=compile_s,
            crl_vs_ce=median_ratio(t_crl, t_ce),
            speed_vs_torch=median_ratio(t_ref, t_crl),
            torch_compiled=cfg["compiled"],
            torch_compiled_s=statistics.median(t_compiled),
            torch_compiled_first_s=compiled_first_s,
            speed_vs_torch_compiled=median_ratio(t_compiled, t_crl),
        )
        row["images_per_s"] = batch / row["crl_s"]
        row["torch_images_per_s"] = batch / row["torch_s"]
        rows.append(row)
        print(
            f"  train {backend} {mode}: crl/ce {row['crl_vs_ce']:.3f}, "
            f"{row['images_per_s']:.1f} img/s, vs torch {row['speed_vs_torch']:.2f}x, "
            f"vs torch.compile {row['speed_vs_torch_compiled']:.2f}x",
            flush=True,
        )
        del models, steps
    return rows


def bench_pipeline(cfg):
    import numpy as np

    from keras_crl.data.pipeline import BatchPipeline

    rng = np.random.default_rng(0)
    n = 256 * cfg["pipeline_batches"]
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=n)
    pipe = BatchPipeline(
        x,
        y,
        256,
        mean=(0.49, 0.48, 0.45),
        std=(0.25, 0.24, 0.26),
        augment=True,
        shuffle=True,
        seed=0,
    )
    pipe[0]
    times = []
    for epoch in range(3):
        pipe.epoch = epoch
        start = time.perf_counter()
        for i in range(len(pipe)):
            pipe[i]
        times.append((time.perf_counter() - start) / n)
    return dict(batch=256, images=n, images_per_s=1.0 / statistics.median(times))


def worker(backend, sections, cfg, out):
    import keras

    assert keras.backend.backend() == backend, keras.backend.backend()
    import torch  # also the plain-PyTorch reference in every worker

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    gpu = _gpu_available(backend)
    if gpu:
        keras.mixed_precision.set_global_policy("mixed_float16")
    result = {"backend": backend, "gpu": gpu, "load_before": os.getloadavg()}
    if "loss" in sections:
        result["loss"] = bench_loss(backend, cfg)
    if "memory" in sections and not gpu:
        result["memory"] = bench_memory(backend, cfg)
    if "train" in sections:
        result["train"] = bench_train(backend, cfg, gpu)
    if "pipeline" in sections:
        result["pipeline"] = bench_pipeline(cfg)
    result["load_after"] = os.getloadavg()
    with open(out, "w") as f:
        json.dump(result, f, indent=1)


# ---------------------------------------------------------------------------
# Report.


def summarize(results, settings_name):
    """Goal verdicts from the merged worker results.

    Each entry has `label`, `target`, `measured` (text for the goals table),
    `value`, `goal` and `verdict`.
    """
    summary = {}

    def add(key, label, value, goal, higher_is_better=False, unit="x", digits=2):
        summary[key] = dict(
            label=label,
            target=(">= " if higher_is_better else "<= ") + f"{goal:g}{unit}",
            measured=f"{value:.{digits}f}{unit}",
            value=value,
            goal=goal,
            verdict=verdict(value, goal, higher_is_better),
        )

    loss_rows = [r for w in results.values() for r in w.get("loss", [])]
    for backend in results:
        rows = [r for r in loss_rows if r["backend"] == backend]
        for kind in ("integer", "one-hot"):
            jit = [r["ratio"] for r in rows if r["mode"] == "jit" and r["labels"] == kind]
            if jit:
                add(
                    f"loss_jit_{kind}/{backend}",
                    f"Loss fwd+bwd CRL/CE under jit, {kind} labels, worst case, {backend}",
                    max(jit),
                    GOALS["loss_jit"],
                )
        if backend == "torch":
            for kind, key in (("integer", "loss_torch_integer"), ("one-hot", "loss_torch_one_hot")):
                eager = [r["ratio"] for r in rows if r["mode"] == "eager" and r["labels"] == kind]
                if eager:
                    add(
                        f"{key}/torch",
                        f"Loss fwd+bwd CRL/CE, torch eager, {kind} labels, worst case",
                        max(eager),
                        GOALS[key],
                    )
    train_rows = [r for w in results.values() for r in w.get("train", [])]
    for backend in results:
        rows = [r for r in train_rows if r["backend"] == backend]
        if rows:
            add(
                f"train/{backend}",
                f"ResNet-18 step CRL/CE, worst mode, {backend}",
                max(r["crl_vs_ce"] for r in rows),
                GOALS["train"],
                digits=3,
            )
    cli_rows = [r for r in train_rows if r["mode"] == cli_mode(r["backend"], r["gpu"])]
    for r in cli_rows:
        add(
            f"vs_torch/{r['backend']}",
            f"ResNet-18 step vs plain PyTorch, {r['backend']} {r['mode']} (the CLI's mode)",
            r["speed_vs_torch"],
            GOALS["vs_torch_each"],
            higher_is_better=True,
            digits=3,
        )
    if cli_rows:
        best = max(cli_rows, key=lambda r: r["speed_vs_torch"])
        add(
            "vs_torch_best",
            f"Best backend vs plain PyTorch ({best['backend']} {best['mode']})",
            best["speed_vs_torch"],
            GOALS["vs_torch_best"],
            higher_is_better=True,
            digits=3,
        )
    memory_rows = [r for w in results.values() for r in w.get("memory", []) if "extra" in r]
    for backend in results:
        rows = [r for r in memory_rows if r["backend"] == backend]
        if rows:
            # O(batch): the extra peak stays below 5% of one B x K float32
            # tensor at every size (a B x K one-hot or mask would be >= 25%).
            add(
                f"memory/{backend}",
                f"Peak extra memory CRL-CE / (B*K*4 bytes), {backend}",
                max(r["extra_per_bk"] for r in rows),
                GOALS["memory"],
                unit="",
                digits=3,
            )
    pipelines = [w["pipeline"] for w in results.values() if "pipeline" in w]
    if pipelines and train_rows:
        fastest = max(train_rows, key=lambda r: r["images_per_s"])
        add(
            "pipeline",
            f"Pipeline img/s / training step img/s ({fastest['backend']} {fastest['mode']})",
            pipelines[0]["images_per_s"] / fastest["images_per_s"],
            GOALS["pipeline"],
            higher_is_better=True,
            digits=1,
        )
        summary["pipeline"]["consumer"] = f"{fastest['backend']} {fastest['mode']}"
    return summary


def markdown(report):
    m, s, res = report["machine"], report["summary"], report["results"]
    lines = [
        "# keras-crl benchmarks",
        "",
        f"`python3 benchmarks/run.py{' --quick' if report['settings'] == 'quick' else ''}`, "
        f"{report['date']}, {report['wall_s']:.0f} s wall.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, load average "
        f"{' / '.join(f'{v:.2f}' for v in m['load_average'])} at the start "
        f"(other jobs share this machine; all ratios are medians of interleaved "
        f"repeats within one process). GPU: "
        + (", ".join(b for b, w in res.items() if w.get("gpu")) or "none")
        + ". "
        f"Python {m['python']}, Keras {m['keras']}, TensorFlow {m['tensorflow']}, "
        f"PyTorch {m['torch']}, JAX {m['jax']}, NumPy {m['numpy']}. "
        f"Intra-op threads per framework: {report['threads']}.",
        "",
        "## Goals",
        "",
        "| Goal | Target | Measured | Verdict |",
        "|---|---|---|---|",
    ]
    for v in s.values():
        lines.append(f"| {v['label']} | {v['target']} | {v['measured']} | {v['verdict']} |")
    loss_rows = [r for w in res.values() for r in w.get("loss", [])]
    if loss_rows:
        lines += [
            "",
            "## 1. Loss: forward + backward, CRL vs cross-entropy (from logits)",
            "",
            "CE is `SparseCategoricalCrossentropy` for integer labels and "
            "`CategoricalCrossentropy` for one-hot. jit = `jax.jit` / "
            "`tf.function(jit_compile=True)`; torch is eager only.",
            "",
            "| Backend | B x K | Labels | Mode | CRL (us) | CE (us) | CRL/CE |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in loss_rows:
            lines.append(
                f"| {r['backend']} | {r['batch']}x{r['classes']} | {r['labels']} | "
                f"{r['mode']} | {r['crl_us']:.0f} | {r['ce_us']:.0f} | "
                f"{r['ratio']:.2f} |"
            )
    train_rows = [r for w in res.values() for r in w.get("train", [])]
    if train_rows:
        lines += [
            "",
            "## 2-3. ResNet-18 training step (CIFAR shape), CRL vs CE and vs plain PyTorch",
            "",
            "`model.train_on_batch` with `TorchSGD(0.1, momentum=0.9, l2=5e-4)`; "
            "plain PyTorch is `benchmarks/torch_reference.py` (same network, "
            "`torch.optim.SGD`, the authors' CRL), timed interleaved in the same "
            "process, as is the same step through `torch.compile` (forward, loss and "
            "backward; the optimizer step eager). `vs` > 1 means Keras is faster; "
            "(CLI) marks the mode `keras-crl train` runs by default.",
            "",
            "| Backend | Mode | Batch | CRL step (s) | CE step (s) | CRL/CE | Keras img/s "
            "| PyTorch img/s | Keras vs PyTorch | Keras vs torch.compile | First step (s) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in train_rows:
            mode = r["mode"] + (" (CLI)" if r["mode"] == cli_mode(r["backend"], r["gpu"]) else "")
            versus_compiled = (
                f"{r['speed_vs_torch_compiled']:.2f}x" if r.get("torch_compiled") else "-"
            )
            lines.append(
                f"| {r['backend']} | {mode} | {r['batch']} | {r['crl_s']:.3f} | "
                f"{r['ce_s']:.3f} | {r['crl_vs_ce']:.3f} | {r['images_per_s']:.1f} | "
                f"{r['torch_images_per_s']:.1f} | {r['speed_vs_torch']:.2f}x | "
                f"{versus_compiled} | {r['first_step_s'][0]:.1f} |"
            )
    memory_rows = [r for w in res.values() for r in w.get("memory", [])]
    if memory_rows:
        lines += [
            "",
            "## 4. Peak memory of forward + backward, integer labels, eager",
            "",
            "Peak RSS above the baseline (logits and labels already allocated); "
            "`extra / (B*K*4)` is CRL's extra peak over CE in units of one "
            "B x K float32 tensor: it stays near 0 when the extra is O(B).",
            "",
            "| Backend | B x K | CRL peak (MiB) | CE peak (MiB) | Extra (MiB) | "
            "Extra / (B*K*4) | XLA temp CRL / CE (MiB) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in memory_rows:
            if "extra" not in r:
                lines.append(f"| {r['backend']} | - | {r.get('error')} | | | | |")
                continue
            xla = "-"
            if r.get("crl_xla_temp") is not None:
                xla = f"{r['crl_xla_temp'] / 2**20:.1f} / {r['ce_xla_temp'] / 2**20:.1f}"
            lines.append(
                f"| {r['backend']} | {r['batch']}x{r['classes']} | "
                f"{r['crl_peak'] / 2**20:.1f} | {r['ce_peak'] / 2**20:.1f} | "
                f"{r['extra'] / 2**20:.1f} | {r['extra_per_bk']:.3f} | {xla} |"
            )
    if "pipeline" in s:
        p = [w["pipeline"] for w in res.values() if "pipeline" in w][0]
        lines += [
            "",
            "## 5. Input pipeline",
            "",
            f"`BatchPipeline` with augmentation (crop + flip), batch {p['batch']}, "
            f"32x32x3 uint8, one thread: {p['images_per_s']:.0f} images/s; the "
            f"fastest training step ({s['pipeline']['consumer']}) consumes "
            f"{p['images_per_s'] / s['pipeline']['value']:.0f} images/s: "
            f"{s['pipeline']['value']:.1f}x.",
        ]
    lines += ["", "Raw numbers: `results.json`.", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="sub-minute smoke run")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["loss", "memory", "train", "pipeline"],
        choices=["loss", "memory", "train", "pipeline"],
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        help="intra-op threads of every framework (default: every core, as users run; "
        "1 to measure without neighbours' noise; see README)",
    )
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = "quick" if args.quick else "default"
    cfg = SETTINGS[settings]
    if args.worker:
        return worker(args.worker, args.sections, cfg, args.worker_out)

    start = time.time()
    report = {
        "settings": settings,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "goals": GOALS,
        "config": cfg,
        "results": {},
    }
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    env.update(thread_env(args.threads))
    report["threads"] = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        for i, backend in enumerate(args.backends):
            wanted = [s for s in args.sections if s != "pipeline" or i == 0]
            # Memory gets its own process, with glibc returning every large
            # block to the OS on free; otherwise freed blocks stay resident
            # and the second loss measured shows no peak at all.
            runs = [
                ([s for s in wanted if s != "memory"], {}),
                (
                    ["memory"] if "memory" in wanted else [],
                    {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"},
                ),
            ]
            merged = {}
            for j, (sections, extra_env) in enumerate(runs):
                if not sections:
                    continue
                out = os.path.join(tmp, f"{backend}{j}.json")
                print(f"== {backend}: {' '.join(sections)}", flush=True)
                cmd = [
                    sys.executable,
                    os.path.abspath(__file__),
                    "--worker",
                    backend,
                    "--worker-out",
                    out,
                    "--sections",
                    *sections,
                ]
                if args.quick:
                    cmd.append("--quick")
                proc = subprocess.run(cmd, env=dict(env, KERAS_BACKEND=backend, **extra_env))
                if proc.returncode != 0 or not os.path.exists(out):
                    merged.setdefault("errors", []).append(
                        f"{' '.join(sections)}: worker exit {proc.returncode}"
                    )
                    continue
                with open(out) as f:
                    part = json.load(f)
                merged.update({k: v for k, v in part.items() if k not in merged})
                for key in ("loss", "memory", "train", "pipeline"):
                    if key in part:
                        merged[key] = part[key]
            report["results"][backend] = merged
    report["wall_s"] = time.time() - start
    report["summary"] = summarize(report["results"], settings)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = markdown(report)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
