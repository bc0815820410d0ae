#!/usr/bin/env bash
# The GPU check: what a GPU changes, measured in one command of under 8 minutes.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [WORK_DIR]            on a GPU machine
#   bash benchmarks/gpu_check.sh --dry-run OUT_DIR [WORK_DIR]  the same steps, tiny, on a CPU
#
# Steps (each with a time limit; a failing step does not stop the others):
#   1. tests, all at once: tests/test_reproducible.py (TF32 off) and
#      tests/test_losses.py on each backend, and the cross-backend consistency
#      suite (tests/cross_backend/test_consistency.py, needs all three backends);
#   2. training, one backend after the other: ResNet-18 on CIFAR-shape synthetic
#      data (32x32x3, 10 classes) in mixed_bfloat16, 6 epochs of 45 steps of 256
#      images, through keras_crl.train, the train step compiled with XLA on
#      TensorFlow (jit on, op determinism off: Keras runs no XLA under it) and
#      JAX (jit on, deterministic), eager on torch (keras-crl refuses jit on
#      there: see TrainConfig); each process first records its devices and TF32
#      settings, and its run folder what ran ("ran": compiled, deterministic);
#   3. summary: every step's exit status and time, the tests' counts and
#      failures, what each training ran (compiled, deterministic), images/s per backend (median epoch after the first, which
#      compiles; validation and checkpoints included), and agreement with the
#      first backend trained (final weights relative to each tensor's scale,
#      per-epoch training losses, test accuracy).
#
# OUT_DIR gets three files: summary.md, summary.json and logs.txt (the end of
# every step's log). WORK_DIR (default OUT_DIR/work) holds the rest: each
# step's full log, JUnit XML, devices-BACKEND.json, the run folders.
# --dry-run: one loss test per backend, the consistency suite only collected,
# small_cnn on 8x8 images for 2 epochs; about a minute on 2 CPU cores.
# BACKENDS (default "tensorflow torch jax") chooses backends; one that is not
# installed is skipped and reported. Exit status 0 when no step failed.
set -u

DRY_RUN=${DRY_RUN:-0}
if [ "${1:-}" = "--dry-run" ]; then
    DRY_RUN=1
    shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: bash benchmarks/gpu_check.sh [--dry-run] OUT_DIR [WORK_DIR]" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1" && OUT=$(cd "$1" && pwd) || exit 2
WORK=${2:-$OUT/work}
mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd) || exit 2
PYTHON=${PYTHON:-python3}
BACKENDS=${BACKENDS:-tensorflow torch jax}
cd "$ROOT" || exit 2

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}
# Several processes share the GPU: JAX would take 75 % of its memory at start
# and TensorFlow all of it.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export TF_FORCE_GPU_ALLOW_GROWTH=true
# Deterministic kernels on every backend (TensorFlow and torch get theirs from
# make_deterministic; XLA reads this flag at start).
export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_deterministic_ops=true"

if [ "$DRY_RUN" = 1 ]; then
    TESTS="tests/test_reproducible.py tests/test_losses.py::TestValues::test_hand_computed_value"
    CROSS_ARGS="--collect-only -q tests/cross_backend/test_consistency.py"
    MODEL=small_cnn IMAGE_SIZE=8 SAMPLES=64 EPOCHS=2 BATCH=16
    TEST_LIMIT=240 BUDGET=600
else
    TESTS="tests/test_reproducible.py tests/test_losses.py"
    CROSS_ARGS="tests/cross_backend/test_consistency.py"
    # 12800 images: 11520 to train (45 batches of 256), 1280 to validate, and
    # 2560 test images; every batch full, so nothing compiles twice.
    MODEL=resnet18 IMAGE_SIZE=32 SAMPLES=12800 EPOCHS=6 BATCH=256
    # Seconds: the tests' limit, and the whole script's (the trainings share
    # what the tests leave).
    TEST_LIMIT=210 BUDGET=450
fi

: >"$WORK/steps.tsv"

# run_step NAME LIMIT_S COMMAND...: runs COMMAND (its process group killed
# after LIMIT_S) with output in WORK/NAME.log; appends NAME, exit status and
# seconds to WORK/steps.tsv.
run_step() {
    local name=$1 limit=$2 start=$SECONDS status
    shift 2
    timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    status=$?
    printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >>"$WORK/steps.tsv"
}

skip_step() {
    echo "$2" >"$WORK/$1.log"
    printf '%s\tskipped\t0\n' "$1" >>"$WORK/steps.tsv"
}

installed() {
    "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)"
}

echo "gpu_check: dry run $DRY_RUN, backends $BACKENDS, results in $OUT, work in $WORK"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
    echo "no nvidia-smi"
fi >"$WORK/nvidia-smi.txt" 2>&1

PRESENT=""
for backend in $BACKENDS; do
    if installed "$backend" && installed keras; then
        PRESENT="$PRESENT $backend"
    fi
done

# 1. Tests, all at once.
echo "gpu_check: tests"
for backend in $BACKENDS; do
    case " $PRESENT " in
    *" $backend "*)
        KERAS_BACKEND=$backend run_step "tests-$backend" "$TEST_LIMIT" \
            "$PYTHON" -m pytest -q -p no:cacheprovider --junitxml="$WORK/tests-$backend.xml" \
            $TESTS &
        ;;
    *) skip_step "tests-$backend" "$backend or keras is not installed" ;;
    esac
done
all_three=1
for backend in tensorflow torch jax; do
    case " $PRESENT " in *" $backend "*) ;; *) all_three=0 ;; esac
done
if [ "$all_three" = 1 ]; then
    run_step tests-cross_backend "$TEST_LIMIT" \
        "$PYTHON" -m pytest -p no:cacheprovider --junitxml="$WORK/tests-cross_backend.xml" \
        $CROSS_ARGS &
else
    skip_step tests-cross_backend "needs tensorflow, torch and jax; installed:$PRESENT"
fi
wait

# 2. Training, one backend after the other (the timings share nothing), torch
# last: each training may use an equal share of the time left, and
# torch.compile is the slowest to compile.
to_train=$(echo $PRESENT | wc -w)
for backend in $(echo " $BACKENDS " | sed 's/ torch / /') $(echo " $BACKENDS " | grep -o " torch "); do
    case " $PRESENT " in
    *" $backend "*) ;;
    *)
        skip_step "train-$backend" "$backend or keras is not installed"
        continue
        ;;
    esac
    limit=$(((BUDGET - SECONDS) / to_train))
    [ "$limit" -lt 30 ] && limit=30
    to_train=$((to_train - 1))
    echo "gpu_check: training on $backend (at most $limit s)"
    # What each backend can compile: TrainConfig.jit refuses the rest.
    case $backend in
    tensorflow) jit=true deterministic=false ;;
    torch) jit=false deterministic=true ;;
    *) jit=true deterministic=true ;;
    esac
    cat >"$WORK/train-$backend.json" <<EOF
{"model": "$MODEL", "dataset": "synthetic",
 "dataset_options": {"num_samples": $SAMPLES, "image_size": $IMAGE_SIZE},
 "epochs": $EPOCHS, "batch_size": $BATCH, "jit": $jit, "deterministic": $deterministic,
 "precision": "mixed_bfloat16",
 "seed": 0, "verbose": 2, "run_dir": "$WORK/train/$backend"}
EOF
    KERAS_BACKEND=$backend run_step "train-$backend" "$limit" \
        "$PYTHON" - "$WORK/train-$backend.json" "$WORK/devices-$backend.json" <<'EOF'
"""Records this backend's devices and TF32 settings, then trains."""
import json
import sys
import time
from pathlib import Path

import keras

config_path, info_path = sys.argv[1:3]
backend = keras.backend.backend()


def devices():
    if backend == "jax":
        import jax

        found = jax.devices()
        names = [f"{d.platform}:{d.id} {d.device_kind}" for d in found]
        return names, any(d.platform == "gpu" for d in found)
    if backend == "tensorflow":
        import tensorflow as tf

        names = [d.name for d in tf.config.list_physical_devices()]
        return names, bool(tf.config.list_physical_devices("GPU"))
    import torch

    names = [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    return ["cpu", *names], torch.cuda.is_available()


def tf32():
    """Each TF32 setting: True where TF32 is allowed."""
    if backend == "jax":
        import jax

        return {"jax_default_matmul_precision": jax.config.jax_default_matmul_precision}
    if backend == "tensorflow":
        import tensorflow as tf

        return {"tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled()}
    import torch

    return {
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
    }


names, gpu = devices()
info = {"backend": backend, "devices": names, "gpu": gpu, "tf32_before": tf32()}
Path(info_path).write_text(json.dumps(info, indent=1) + "\n")
print(json.dumps(info), flush=True)

from keras_crl.train import TrainConfig, train  # noqa: E402

start = time.perf_counter()
metrics = train(TrainConfig(**json.loads(Path(config_path).read_text())))
info.update(tf32_after=tf32(), train_s=time.perf_counter() - start, metrics=metrics)
Path(info_path).write_text(json.dumps(info, indent=1) + "\n")
print(json.dumps(info["tf32_after"]), flush=True)
EOF
done

# 3. Summary (Keras' numpy backend: reading files needs no framework).
echo "gpu_check: summary"
KERAS_BACKEND=numpy "$PYTHON" - "$OUT" "$WORK" "$DRY_RUN" $BACKENDS <<'EOF'
"""Writes OUT/summary.json, OUT/summary.md and OUT/logs.txt from WORK."""
import json
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from keras_crl.compare import max_difference
from keras_crl.run_folder import read_log
from keras_crl.run_folder import read_weights

out, work, dry_run, backends = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]

steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, status, seconds = line.split("\t")
    steps.append({"step": name, "status": status, "seconds": int(seconds)})


def junit(path):
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["failed"] = []
    counts["passed"] = []
    for case in root.iter("testcase"):
        node = f"{case.get('classname')}::{case.get('name')}"
        problem = case.find("failure")
        problem = case.find("error") if problem is None else problem
        if problem is not None:
            counts["failed"].append(f"{node}: {(problem.get('message') or '')[:300]}")
        elif case.find("skipped") is None:
            counts["passed"].append(node)
    return counts


tests = {}
for step in steps:
    if step["step"].startswith("tests-"):
        xml = work / f"{step['step']}.xml"
        tests[step["step"][6:]] = junit(xml) if xml.exists() else None

runs = {}
for backend in backends:
    path = work / f"devices-{backend}.json"
    runs[backend] = json.loads(path.read_text()) if path.exists() else None

trained = [
    b for b in backends if runs[b] and "metrics" in runs[b]
    and (work / "train" / b / "last.weights.h5").exists()
]
agreement = {}
if trained:
    reference = trained[0]
    ref_weights = read_weights(work / "train" / reference / "last.weights.h5")
    ref_log = read_log(work / "train" / reference / "log.csv")
    for backend in trained[1:]:
        log = read_log(work / "train" / backend / "log.csv")
        loss_diff = np.abs(log["loss"] - ref_log["loss"])
        agreement[backend] = {
            "reference": reference,
            "max_weight_diff": max_difference(
                ref_weights, read_weights(work / "train" / backend / "last.weights.h5")
            ),
            "epoch_loss_diff": [float(d) for d in loss_diff],
            "test_accuracy_diff": runs[backend]["metrics"]["test_accuracy"]
            - runs[reference]["metrics"]["test_accuracy"],
        }

summary = {
    "dry_run": dry_run,
    "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    "gpu": (work / "nvidia-smi.txt").read_text().strip(),
    "failed_steps": [s["step"] for s in steps if s["status"] not in ("0", "skipped")],
    "steps": steps,
    "tests": tests,
    "runs": runs,
    "agreement": agreement,
}
(out / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")

lines = [
    f"# GPU check{' (dry run)' if dry_run else ''}, {summary['date']}",
    "",
    f"GPU: {summary['gpu']}. Failed steps: {', '.join(summary['failed_steps']) or 'none'}.",
    "",
    "| step | exit status | seconds |",
    "|---|---|---|",
    *(f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps),
    "",
    "| tests | run | failures | errors | skipped |",
    "|---|---|---|---|---|",
]
status = {s["step"]: s["status"] for s in steps}
for name, counts in tests.items():
    if counts is None:
        why = "skipped" if status[f"tests-{name}"] == "skipped" else "no JUnit XML"
        lines.append(f"| {name} | {why} | | | |")
    else:
        lines.append(
            f"| {name} | {counts['tests']} | {counts['failures']} | {counts['errors']} "
            f"| {counts['skipped']} |"
        )
failed = [f for counts in tests.values() if counts for f in counts["failed"]]
lines += ["", *(f"- FAILED {f}" for f in failed)] if failed else []
lines += [
    "",
    "| backend | GPU | TF32 | compiled | deterministic | images/s | s/epoch | final train loss "
    "| test accuracy | max weight diff | max epoch-loss diff |",
    "|---|---|---|---|---|---|---|---|---|---|---|",
]
for backend in backends:
    run = runs[backend]
    if not run or "metrics" not in run:
        lines.append(f"| {backend} | {run['gpu'] if run else '?'} | no result | | | | | | | | |")
        continue
    m, a = run["metrics"], agreement.get(backend)
    tf32_off = all(v in (False, "highest") for v in run["tf32_after"].values())
    lines.append(
        f"| {backend} | {run['gpu']} | {'off' if tf32_off else run['tf32_after']} "
        f"| {m['ran']['jit']} | {m['ran']['deterministic']} "
        f"| {m['images_per_second']:.0f} "
        f"| {m['seconds_per_epoch']:.2f} | {m['final_train_loss']:.4f} "
        f"| {100 * m['test_accuracy']:.2f} % "
        + (
            f"| {a['max_weight_diff']:.2e} | {max(a['epoch_loss_diff']):.2e} |"
            if a
            else "| reference | reference |"
        )
    )
text = "\n".join(lines) + "\n"
(out / "summary.md").write_text(text)
print(text)

tails = []
for step in steps:
    log = (work / f"{step['step']}.log").read_text(errors="replace")
    tails.append(f"===== {step['step']} (exit {step['status']})\n{log[-6000:]}")
(out / "logs.txt").write_text("\n".join(tails) + "\n")
EOF
summary_status=$?

if [ "$summary_status" != 0 ]; then
    echo "gpu_check: the summary failed" >&2
    exit 1
fi
if awk -F'\t' '$2 != "0" && $2 != "skipped" { bad = 1 } END { exit !bad }' "$WORK/steps.tsv"; then
    echo "gpu_check: a step failed (see $OUT/summary.md)" >&2
    exit 1
fi
exit 0
