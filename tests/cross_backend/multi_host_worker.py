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
- `writes`: every path outside the system's own folders (`/dev`, `/proc`,
  `/sys`) and JAX's compilation cache this process opened for writing, renamed, replaced, created or
  removed (Python's audit events: `open`, `os.rename` (also `os.replace`
  and `shutil.move`), `os.mkdir`, `os.remove`), and every HDF5 file it
  opened for writing (`h5py`'s C library writes past the audit events: its
  file opener `h5py._hl.files.make_fid`, which every `h5py.File` calls, is
  wrapped). `np.savez` writes through `open`.
- `decoded`: the files a shuffled (training) `FolderStream` decoded, in
  order (`FolderStream.load` wrapped).

It also prints `keras-crl-test: joining at T` (T: `time.monotonic()`, one
clock for every process of the machine) to stderr when `keras-crl` starts to
join the cluster (`keras_crl.parallel.join` wrapped), so a test can time the
join itself, not the imports before it.
"""

import os
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_crl import cli

FED = []  # (kind, first batch's images, initial_epoch, steps per epoch)
WRITES = set()


# Not keras-crl's writes: the system's, and JAX's compilation cache (which
# the suite points at one shared folder, tests/conftest.py).
SYSTEM = ("/dev/", "/proc/", "/sys/")
if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    SYSTEM += (os.path.realpath(os.environ["JAX_COMPILATION_CACHE_DIR"]),)
DECODED = []  # the files a shuffled FolderStream decoded


def watch_writes(run_dir):
    """Records every write of this process: under `run_dir` relative to it,
    elsewhere as an absolute path."""
    run_dir = os.path.realpath(run_dir)

    def record(path):
        if not isinstance(path, (str, bytes, os.PathLike)):
            return  # a file descriptor: opened for writing before, and recorded then
        path = os.path.realpath(os.fsdecode(path))
        if path == run_dir or path.startswith(run_dir + os.sep):
            WRITES.add(os.path.relpath(path, run_dir))
        elif not path.startswith(SYSTEM):
            WRITES.add(path)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            if (mode and any(c in mode for c in "wax+")) or (
                flags and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            ):
                record(path)
        elif event in ("os.rename", "os.mkdir", "os.remove"):
            record(args[0])
            if event == "os.rename":
                record(args[1])

    sys.addaudithook(hook)
    import h5py._hl.files

    make_fid = h5py._hl.files.make_fid

    def recording_make_fid(name, mode, *args, **kwargs):
        if mode != "r":
            record(name)
        return make_fid(name, mode, *args, **kwargs)

    h5py._hl.files.make_fid = recording_make_fid


def record_decodes():
    from keras_crl.data.stream import FolderStream

    load = FolderStream.load

    def recording_load(self, file, rng):
        if self.shuffle:
            DECODED.append(os.path.basename(file))
        return load(self, file, rng)

    FolderStream.load = recording_load


def time_join():
    from keras_crl import parallel

    join = parallel.join

    def timed_join(cluster):
        sys.stderr.write(f"keras-crl-test: joining at {time.monotonic()}\n")
        sys.stderr.flush()
        return join(cluster)

    parallel.join = timed_join


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
    record_decodes()
    time_join()
    status = cli.main(train_args)
    if status:
        sys.exit(status)  # e.g. 2: could not join the cluster
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
    if DECODED:
        arrays["decoded"] = np.array(DECODED)
    np.savez(Path(out), **arrays)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
