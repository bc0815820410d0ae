"""ResNet-18's train step compiled (`jit_compile=True`) against not, per backend.

    python3 benchmarks/jit.py [--threads N] [--steps 5] [--batch 32] [--timeout 1500]

One worker process per backend (`KERAS_BACKEND=b python3 benchmarks/jit.py
--worker b OUT`), each timing `train_on_batch` on a fixed CIFAR-shape batch
in both modes: the first step (trace and compile), then, after one more
warm-up step, `--steps` steps (median). Not compiled means a `tf.function`
graph on TensorFlow, eager on torch and op-by-op eager on JAX. TensorFlow's
op determinism stays off (Keras refuses XLA under it). On torch it also
records what dynamo did (`torch._dynamo.utils.counters`: frames, graphs,
graph breaks, recompile-limit hits), the reason `keras-crl train` refuses
`--jit on` there. A backend that runs past `--timeout` is reported as such.

Writes `benchmarks/results/jit.json` and `jit.md` (date, threads, load).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

from keras_crl.backends import BACKENDS
from keras_crl.backends import thread_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from run import machine  # noqa: E402


def _dynamo_counters():
    from torch._dynamo.utils import counters

    return {
        "frames": dict(counters["frames"]),
        "unique_graphs": counters["stats"]["unique_graphs"],
        "graph_breaks": sum(counters["graph_break"].values()),
        "recompile_limit_hits": sum(
            n for reason, n in counters["unimplemented"].items() if "recompile limit" in reason
        ),
    }


def worker(backend, steps, batch, out):
    import numpy as np

    from keras_crl import CompetingRatioLoss
    from keras_crl.models import get_model
    from keras_crl.recipes import TorchSGD

    if backend == "torch":
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch).astype("int32")
    rows = []
    # Not compiled first: torch's dynamo counters then count the compiled mode only.
    for jit in (False, True):
        model = get_model("resnet18", num_classes=10, input_shape=(32, 32, 3))
        model.compile(
            optimizer=TorchSGD(0.1, momentum=0.9, l2=5e-4),
            loss=CompetingRatioLoss(from_logits=True),
            jit_compile=jit,
        )
        start = time.perf_counter()
        model.train_on_batch(x, y)
        first = time.perf_counter() - start
        model.train_on_batch(x, y)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        row = {
            "backend": backend,
            "jit_compile": jit,
            "resolved_jit_compile": bool(model.jit_compile),
            "first_step_s": first,
            "step_s": statistics.median(times),
            "images_per_s": batch / statistics.median(times),
        }
        if backend == "torch" and jit:
            row["dynamo"] = _dynamo_counters()
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(out, "w") as f:
            json.dump(rows, f, indent=1)


def markdown(report):
    lines = [
        f"# ResNet-18 train step, compiled vs not ({report['date']})",
        "",
        f"`python3 benchmarks/jit.py`: batch {report['batch']} of 32x32x3, CRL, TorchSGD; "
        f"median of {report['steps']} steps after a warm-up step; "
        f"{report['threads']} intra-op threads per framework (all cores). "
        f"CPU: {report['machine']['cpu']}, {report['machine']['cores']} cores. "
        f"Load average before {report['load_before']}, after {report['load_after']}: "
        "the machine was shared with other jobs, so absolute times are noisy.",
        "",
        "| backend | jit_compile | ran compiled | first step s | step s | images/s |",
        "|---|---|---|---|---|---|",
    ]
    for backend, result in report["results"].items():
        for row in result.get("rows", []):
            lines.append(
                f"| {backend} | {row['jit_compile']} | {row['resolved_jit_compile']} "
                f"| {row['first_step_s']:.1f} | {row['step_s']:.3f} | {row['images_per_s']:.1f} |"
            )
        if result.get("error"):
            lines.append(f"| {backend} | | | {result['error']} | | |")
    for backend, result in report["results"].items():
        for row in result.get("rows", []):
            if "dynamo" in row:
                lines += ["", f"torch.compile on {backend}: {json.dumps(row['dynamo'])}"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds per backend")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], args.steps, args.batch, args.worker[1])
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "threads": args.threads,
        "steps": args.steps,
        "batch": args.batch,
        "machine": machine(),
        "load_before": [round(v, 1) for v in os.getloadavg()],
        "results": {},
    }
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    env.update(thread_env(args.threads))
    os.makedirs(args.out, exist_ok=True)
    for backend in args.backends:
        out = os.path.join(args.out, f".jit-{backend}.json")
        command = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps)]
        command += ["--batch", str(args.batch), "--worker", backend, out]
        result = {}
        start = time.perf_counter()
        # Its own process group: torch.compile's compile workers end with it.
        proc = subprocess.Popen(
            command, env=dict(env, KERAS_BACKEND=backend), start_new_session=True
        )
        try:
            proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            result["error"] = f"not finished after {args.timeout:.0f} s"
        result["wall_s"] = time.perf_counter() - start
        if os.path.exists(out):
            with open(out) as f:
                result["rows"] = json.load(f)
            os.remove(out)
        report["results"][backend] = result
    report["load_after"] = [round(v, 1) for v in os.getloadavg()]
    with open(os.path.join(args.out, "jit.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = markdown(report)
    with open(os.path.join(args.out, "jit.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
