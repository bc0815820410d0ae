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
                    crl_vs_ce=1.0,
                    speed_vs_torch=1.0,
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
    assert report["summary"]["loss/torch"]["verdict"] == "missed"
    assert report["summary"]["train/torch"]["verdict"] == "met"
    assert report["summary"]["pipeline"]["verdict"] == "met"
    text = run.markdown(report)
    assert "| torch | 2x3 | integer | eager |" in text and "## 5. Input pipeline" in text
