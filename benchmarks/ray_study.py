"""The study's executors compared: `python3 benchmarks/ray_study.py`.

One quick study, 6 runs (CE, NLLR and the authors' CRL x 2 seeds, small_cnn on
the bundled digits, `--epochs` epochs, one backend), trained twice into fresh
folders: by the sequential executor, then by the Ray executor on a local
instance with every core of this machine, one CPU and one thread per run.
Both use one thread per run, so their runs are the same; the wall time of
each study (settings to report) and their ratio are written with the core
count and load average to `benchmarks/results/ray_study.json` and `.md`.

On a machine with N GPUs, `--gpus-per-run 1` (with `KERAS_BACKEND` a GPU
backend) measures the GPU case: one run per GPU.
"""

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _machine():
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(HERE, "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine()


def settings(epochs):
    import keras

    from keras_crl.study.settings import StudySettings
    from keras_crl.study.settings import resolve_settings
    from keras_crl.study.variants import variant

    base = resolve_settings(
        {"dataset": "digits", "model": "small_cnn", "epochs": epochs},
        seeds=2,
        backends=keras.backend.backend(),
    )
    return StudySettings(
        training=base.training,
        seeds=[0, 1],
        backends=base.backends,
        variants=[variant("ce"), variant("nllr"), variant("crl", 0, 0.25)],
        threads=1,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--gpus-per-run", type=float, default=0.0)
    parser.add_argument("--note", default="", help="e.g. that other jobs shared the machine")
    args = parser.parse_args()
    import keras

    from keras_crl.study import ray_executor
    from keras_crl.study import runner

    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        runner.run(settings(args.epochs), f"{tmp}/sequential", keras.backend.backend())
        seconds["sequential"] = time.perf_counter() - start
        start = time.perf_counter()
        ray_executor.run(
            settings(args.epochs),
            f"{tmp}/ray",
            num_cpus=os.cpu_count(),
            gpus_per_run=args.gpus_per_run,
            echo=lambda *a, **k: None,
        )
        seconds["ray"] = time.perf_counter() - start
        same = [
            [
                (r["run"], r["test_accuracy"], r["final_train_loss"])
                for r in json.load(open(f"{tmp}/{e}/results.json"))["runs"]
            ]
            for e in ("sequential", "ray")
        ]
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "runs": 6,
        "backend": keras.backend.backend(),
        "epochs": args.epochs,
        "gpus_per_run": args.gpus_per_run,
        "seconds": seconds,
        "ray_speedup": seconds["sequential"] / seconds["ray"],
        "same_results": same[0] == same[1],
        "machine": _machine(),
        "note": args.note,
    }
    out = os.path.join(HERE, "results", "ray_study")
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=2)
    m = result["machine"]
    lines = [
        "# The study's executors: sequential vs Ray",
        "",
        f"{result['date']}, `python3 benchmarks/ray_study.py --epochs {args.epochs}`: 6 runs "
        f"(CE, NLLR, CRL x 2 seeds) of small_cnn on the bundled digits, {args.epochs} epochs, "
        f"{result['backend']}, one thread per run; Ray: a local instance with all "
        f"{m['cores']} cores, one CPU per run.",
        "",
        "| executor | wall time (s) |",
        "| --- | --- |",
        f"| sequential | {seconds['sequential']:.1f} |",
        f"| Ray | {seconds['ray']:.1f} |",
        "",
        f"Speed-up of Ray: {result['ray_speedup']:.2f}x on {m['cores']} cores "
        f"({m['cpu']}; load average {', '.join(f'{x:.1f}' for x in m['load_average'])} "
        "when it ended). Same test accuracy and final training loss in every run: "
        f"{'yes' if result['same_results'] else 'no'}.",
    ]
    if args.note:
        lines += ["", args.note]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
