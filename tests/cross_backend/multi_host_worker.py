"""`keras-crl train` in this process, recording what it fed and wrote.

    KERAS_BACKEND=... python -m tests.cross_backend.multi_host_worker \
        OUT.npz RESUME_EPOCHS TRAIN_ARGS...

Runs `keras_crl.cli.main(TRAIN_ARGS)`, then, unless RESUME_EPOCHS is 0, the
same with `--resume --epochs RESUME_EPOCHS`. If OUT.npz exists (a run
resumed in a new process), what it holds is kept and added to.
TRAIN_ARGS may join a cluster (`--coordinator ... --process-id I`): the test
starts one worker per process with the same arguments but the id.

What it records, for `test_multi_host.py` to judge, observed from outside
the code under test:

- `fed{call}`: the first batch's images of what each `fit` and `evaluate`
  call was given (`keras.Model.fit` / `evaluate` wrapped), and
  `initial_epoch{call}` and `steps{call}` (train batches run per epoch) of
  each `fit`.
- `writes`: every path under the run folder this process opened for
  writing, renamed, created or removed (Python's audit events: `open`,
  `os.rename`, `os.mkdir`, `os.remove`; HDF5 weights files are written by C
  code, which these do not see, next to the JSON, CSV and NPZ files they do).
"""

import os
import sys
from pathlib import Path

import keras
import numpy as np

from keras_crl import cli

FED = []  # (kind, first batch's images, initial_epoch, steps per epoch)
WRITES = set()


def watch_writes(run_dir):
    run_dir = os.path.realpath(run_dir)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (mode and any(c in mode for c in "wax+")) or (
                flags and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
        else:
            path, writing = args[0], event in ("os.rename", "os.mkdir", "os.remove")
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(path))
            if path == run_dir or path.startswith(run_dir + os.sep):
                WRITES.add(os.path.relpath(path, run_dir))

    sys.addaudithook(hook)


class CountSteps(keras.callbacks.Callback):
    def __init__(self, record):
        super().__init__()
        self.record = record

    def on_epoch_begin(self, epoch, logs=None):
        self.record.append(0)

    def on_train_batch_end(self, batch, logs=None):
        self.record[-1] += 1


def record_feeds():
    fit, evaluate = keras.Model.fit, keras.Model.evaluate

    def recording_fit(self, x=None, *args, **kwargs):
        steps = []
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), CountSteps(steps)]
        FED.append(("fit", np.asarray(x[0][0]), kwargs.get("initial_epoch", 0), steps))
        return fit(self, x, *args, **kwargs)

    def recording_evaluate(self, x=None, *args, **kwargs):
        FED.append(("evaluate", np.asarray(x[0][0]), 0, []))
        return evaluate(self, x, *args, **kwargs)

    keras.Model.fit, keras.Model.evaluate = recording_fit, recording_evaluate


def main(out, resume_epochs, train_args):
    run_dir = train_args[train_args.index("--run-dir") + 1]
    watch_writes(run_dir)
    record_feeds()
    assert cli.main(train_args) == 0
    if resume_epochs:
        assert cli.main([*train_args, "--resume", "--epochs", str(resume_epochs)]) == 0
    arrays, first = {}, 0
    if Path(out).exists():
        with np.load(out) as before:
            arrays = dict(before)
        WRITES.update(w for w in arrays["writes"].tolist() if w)
        first = sum(k.startswith("kind") for k in arrays)
    arrays["writes"] = np.array(sorted(WRITES) or [""])
    for call, (kind, images, initial_epoch, steps) in enumerate(FED, start=first):
        arrays[f"kind{call}"] = kind
        arrays[f"fed{call}"] = images
        arrays[f"initial_epoch{call}"] = initial_epoch
        arrays[f"steps{call}"] = np.array(steps, dtype=np.int64)
    np.savez(Path(out), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
