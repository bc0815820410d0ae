"""benchmarks/gpu_check.sh: its CPU dry run runs every step and records each result.

The dry run starts its own process per backend, so it runs once per suite:
in the torch run of the suite.
"""

import json
import math
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from keras_crl.backends import BACKENDS
from tests.backend_utils import BACKEND

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    BACKEND != "torch", reason="the dry run starts every backend itself; once per suite"
)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, out, out / "work"


def test_dry_run_passes_every_step(dry_run):
    proc, out, work = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    steps = [line.split("\t") for line in (work / "steps.tsv").read_text().splitlines()]
    names = [step[0] for step in steps]
    assert sorted(names) == sorted(
        [f"tests-{b}" for b in BACKENDS]
        + ["tests-cross_backend"]
        + [f"train-{b}" for b in BACKENDS]
    )
    assert all(step[1] == "0" for step in steps), steps
    assert sorted(p.name for p in out.iterdir()) == [
        "logs.txt",
        "summary.json",
        "summary.md",
        "work",
    ]


def test_each_backend_ran_its_own_tests(dry_run):
    _, _, work = dry_run
    for backend in BACKENDS:
        root = ElementTree.parse(work / f"tests-{backend}.xml").getroot()
        passed = {
            case.get("name").split("[")[0]
            for case in root.iter("testcase")
            if not any(case.find(tag) is not None for tag in ("failure", "error", "skipped"))
        }
        # The TF32 test of this backend ran (the others skip), and a loss test.
        assert f"test_tf32_off_{backend}" in passed, (backend, passed)
        assert "test_hand_computed_value" in passed, (backend, passed)
    collected = (work / "tests-cross_backend.log").read_text()
    assert "test_consistency.py::test_training_agrees" in collected


def test_each_backend_trained_resnet_settings_in_bf16_with_jit(dry_run):
    _, _, work = dry_run
    for backend in BACKENDS:
        info = json.loads((work / f"devices-{backend}.json").read_text())
        assert info["backend"] == backend and info["gpu"] is False and info["devices"]
        # make_deterministic turned TF32 off in the training process.
        after = info["tf32_after"]
        assert after and all(v in (False, "highest") for v in after.values()), after
        written = json.loads((work / "train" / backend / "config.json").read_text())
        config = written["config"]
        assert config["precision"] == "mixed_bfloat16" and config["dataset"] == "synthetic"
        # XLA on TensorFlow (op determinism off, or Keras runs no XLA) and on
        # JAX; torch eagerly (keras-crl refuses --jit on there). What ran, as
        # Keras resolved it, not only what was asked.
        assert config["jit"] is (backend != "torch"), config
        ran = {"jit": backend != "torch", "deterministic": backend != "tensorflow"}
        assert written["ran"] == info["metrics"]["ran"] == ran, (backend, written["ran"])
        assert info["metrics"]["images_per_second"] > 0
        assert len((work / "train" / backend / "log.csv").read_text().splitlines()) == 3


def test_summary_holds_speed_and_agreement(dry_run):
    _, out, _ = dry_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["failed_steps"] == []
    assert set(summary["agreement"]) == set(BACKENDS[1:])
    for backend, agreement in summary["agreement"].items():
        assert agreement["reference"] == BACKENDS[0]
        # bf16 rounds differently on each backend: recorded, not bounded.
        assert math.isfinite(agreement["max_weight_diff"]), (backend, agreement)
        assert len(agreement["epoch_loss_diff"]) == 2
        assert all(math.isfinite(d) for d in agreement["epoch_loss_diff"])
    table = (out / "summary.md").read_text()
    for backend in BACKENDS:
        assert f"| train-{backend} | 0 |" in table
        compiled, deterministic = backend != "torch", backend != "tensorflow"
        assert f"| {backend} | False | off | {compiled} | {deterministic} |" in table
    logs = (out / "logs.txt").read_text()
    assert all(f"===== train-{b} (exit 0)" in logs for b in BACKENDS)


def test_usage_error_without_an_output_folder():
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "usage" in proc.stderr
