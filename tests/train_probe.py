"""`keras-crl` with a probe that records every training step it runs.

    python -m tests.train_probe PROGRESS --steps N [--pause-at E:S]
        [--pause-in-save E:S] -- CLI ARGS...

Appends `begin E`, `step E S` and `end E` lines (0-based, flushed at once)
to PROGRESS, so a test can see which steps a process really trained, not
just where it ended. The step `S` within epoch `E` is counted by the
optimizer (its `iterations` after the step, less the `N` steps of each
earlier epoch), not by Keras' batch index, so a resumed process that
replayed steps or skipped some shows it. With `--pause-at`, the process
writes `paused` after that step and sleeps, so the test can kill it at a
known point inside an epoch; with `--pause-in-save`, it does so inside the
save of the checkpoint at that position, after the temporary file is
written and before it replaces `state.npz`. Run with KERAS_BACKEND equal to
`--backend`: a backend switch restarts the command without the probe. Under
torchrun each process writes `PROGRESS.RANK`.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import keras
import numpy as np


def pause(file):
    """Writes `paused` and waits to be killed.

    A process whose parent dies meanwhile exits: killing torchrun's process
    group does not reach the workers it started in sessions of their own,
    which would otherwise outlive the test.
    """
    file.write("paused\n")
    parent = os.getppid()
    deadline = time.time() + 3600
    while os.getppid() == parent and time.time() < deadline:
        time.sleep(0.1)
    os._exit(3)


class Probe(keras.callbacks.Callback):
    def __init__(self, path, steps, pause_at=None):
        super().__init__()
        self.file = open(path, "a", buffering=1)
        self.steps = steps
        self.pause_at = pause_at

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.file.write(f"begin {epoch}\n")

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) - 1
        step -= self.epoch * self.steps
        self.file.write(f"step {self.epoch} {step}\n")
        if (self.epoch, step) == self.pause_at:
            pause(self.file)

    def on_epoch_end(self, epoch, logs=None):
        self.file.write(f"end {epoch}\n")


def pause_in_save(progress, position):
    """Makes the save of the checkpoint at `position` sleep before its rename."""
    replace = os.replace

    def paused_replace(src, dst):
        if str(dst).endswith("state.npz") and str(src).endswith(".tmp"):
            with np.load(src) as state:
                if (int(state["epoch"]), int(state["step"])) == position:
                    pause(open(progress, "a", buffering=1))
        replace(src, dst)

    os.replace = paused_replace


def probe_args(progress, steps, cli_args, pause=()):
    """`-m tests.train_probe ...`: the probe around `keras-crl` with `cli_args`.

    A test puts `sys.executable` (or a launcher such as torchrun) in front.
    """
    probe = ["-m", "tests.train_probe", str(progress), "--steps", str(steps), *pause]
    return [*probe, "--", *cli_args]


def read_progress(path):
    """`(steps, ended)`: the (epoch, step) pairs trained and the epochs ended."""
    steps, ended = [], []
    for line in Path(path).read_text().split("\n"):
        kind, *numbers = line.split() or [""]
        if kind == "step":
            steps.append(tuple(int(n) for n in numbers))
        elif kind == "end":
            ended.append(int(numbers[0]))
    return steps, ended


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("progress")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--pause-at")
    parser.add_argument("--pause-in-save")
    args, cli_args = parser.parse_known_args(argv)
    if "RANK" in os.environ:  # under torchrun: one file per process
        args.progress = f"{args.progress}.{os.environ['RANK']}"

    def position(text):
        return tuple(int(n) for n in text.split(":")) if text else None

    if args.pause_in_save:
        pause_in_save(args.progress, position(args.pause_in_save))

    from keras_crl import cli
    from keras_crl import train as train_lib

    run = train_lib.train
    probe = Probe(args.progress, args.steps, position(args.pause_at))

    def train_with_probe(config, callbacks=()):
        return run(config, callbacks=[*callbacks, probe])

    train_lib.train = train_with_probe
    return cli.main([a for a in cli_args if a != "--"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
