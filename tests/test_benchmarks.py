"""Smoke test of the benchmark runner's helpers (no timing assertions)."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location(
        "bench_run", os.path.join(ROOT, "benchmarks", "run.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_median_ratio(run):
    assert run.median_ratio([2.0, 3.0, 30.0], [1.0, 1.0, 1.0]) == 3.0


def test_interleaved_returns_one_list_per_function(run):
    calls = []
    times = run.interleaved([lambda: calls.append("a"), lambda: calls.append("b")], 3, 2)
    assert [len(t) for t in times] == [3, 3]
    assert calls.count("a") == calls.count("b") == 6
    assert calls[:4] == ["a", "a", "b", "b"] and calls[4:8] == ["b", "b", "a", "a"]


def test_verdict(run):
    assert run.verdict(1.05, 1.10) == "met"
    assert run.verdict(1.2, 1.10) == "missed"
    assert run.verdict(6.0, 5.0, higher_is_better=True) == "met"
    assert run.verdict(None, 1.0) == "n/a"


def test_machine_and_thread_env(run):
    info = run.machine()
    assert info["cores"] >= 1 and info["keras"]
    env = run.thread_env(1)
    assert env["OMP_NUM_THREADS"] == "1" and "intra_op" in env["XLA_FLAGS"]


def test_markdown_from_synthetic_results(run):
    results = {
        "torch": {
            "gpu": False,
            "loss": [
                dict(
                    backend="torch",
                    batch=2,
                    classes=3,
                    labels="integer",
                    mode="eager",
                    crl_us=2.0,
                    ce_us=1.0,
                    ratio=2.0,
                )
            ],
            "train": [
                dict(
                    backend="torch",
                    mode="eager",
                    batch=2,
                    crl_s=1.0,
                    ce_s=1.0,
                    torch_s=1.0,
                    first_step_s=[1.0, 1.0],
                    gpu=False,
                    crl_vs_ce=1.0,
                    speed_vs_torch=1.0,
                    torch_compiled=True,
                    torch_compiled_s=0.9,
                    speed_vs_torch_compiled=0.9,
                    images_per_s=2.0,
                    torch_images_per_s=2.0,
                )
            ],
            "memory": [
                dict(
                    backend="torch",
                    batch=2,
                    classes=3,
                    crl_peak=24,
                    ce_peak=24,
                    extra=0,
                    extra_per_bk=0.0,
                )
            ],
            "pipeline": dict(batch=256, images=512, images_per_s=20.0),
        }
    }
    report = dict(
        settings="quick",
        date="today",
        wall_s=1.0,
        threads=1,
        machine=run.machine(),
        results=results,
        summary=run.summarize(results, "quick"),
    )
    summary = report["summary"]
    assert summary["loss_torch_integer/torch"]["verdict"] == "missed"  # 2.0 > 1.5
    assert "loss_torch_one_hot/torch" not in summary  # not measured
    assert summary["train/torch"]["verdict"] == "met"
    assert summary["vs_torch/torch"]["verdict"] == "met"  # 1.0 >= 0.90
    assert summary["vs_torch_best"]["verdict"] == "missed"  # 1.0 < 1.10
    assert summary["pipeline"]["verdict"] == "met"
    text = run.markdown(report)
    assert "| torch | 2x3 | integer | eager |" in text and "## 5. Input pipeline" in text
    assert "| torch | eager (CLI) | 2 |" in text and "| 0.90x |" in text


def test_the_cli_mode_is_keras_auto(run):
    assert run.cli_mode("tensorflow", gpu=False) == "graph"
    assert run.cli_mode("tensorflow", gpu=True) == "jit"
    assert run.cli_mode("jax", gpu=False) == "jit"
    assert run.cli_mode("torch", gpu=True) == "eager"


def test_the_cli_mode_is_what_keras_auto_resolves_to_here(run):
    # `keras-crl train --jit auto` passes jit_compile="auto" to compile.
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(loss="mse", jit_compile="auto")
    compiled = run.cli_mode(keras.backend.backend(), gpu=False) == "jit"
    assert bool(model.jit_compile) == compiled


def test_gaps_reproduction_runs_on_this_backend():
    # benchmarks/gaps.py, the per-layer reproductions the benchmark pages cite, in
    # this process (its worker) at tiny shapes: a row per layer and mode,
    # and the markdown table from them.
    import keras

    spec = importlib.util.spec_from_file_location(
        "bench_gaps", os.path.join(ROOT, "benchmarks", "gaps.py")
    )
    gaps = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gaps)
    backend = keras.backend.backend()
    rows = gaps.worker(backend, (2, 8, 8, 4), repeats=2)
    modes = {"torch": ["eager"], "jax": ["jit"], "tensorflow": ["graph", "jit"]}[backend]
    assert [(r["layer"], r["mode"]) for r in rows] == [
        (layer, mode) for layer in ("conv", "batch_norm") for mode in modes
    ]
    assert all(r["keras_ms"] > 0 and r["torch_ms"] > 0 for r in rows)
    text = gaps.markdown(dict(date="today", threads=1, shape=(2, 8, 8, 4), rows=rows))
    assert f"| {backend} | {modes[0]} | conv |" in text
