"""`keras-crl` with a probe that records every training step it runs.

    python -m tests.train_probe PROGRESS [--pause-at EPOCH:STEP] -- CLI ARGS...

Appends `begin E`, `step E S` and `end E` lines (0-based, flushed at once)
to PROGRESS, so a test can see which steps a process really trained, not
just where it ended. With `--pause-at`, the process writes `paused` after
that step and sleeps, so the test can kill it at a known point inside an
epoch. Run with KERAS_BACKEND equal to `--backend`: a backend switch
restarts the command without the probe.
"""

import argparse
import sys
import time

import keras


class Probe(keras.callbacks.Callback):
    def __init__(self, path, pause_at=None):
        super().__init__()
        self.file = open(path, "a", buffering=1)
        self.pause_at = pause_at

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.file.write(f"begin {epoch}\n")

    def on_train_batch_end(self, batch, logs=None):
        self.file.write(f"step {self.epoch} {batch}\n")
        if (self.epoch, batch) == self.pause_at:
            self.file.write("paused\n")
            time.sleep(3600)

    def on_epoch_end(self, epoch, logs=None):
        self.file.write(f"end {epoch}\n")


def read_progress(path):
    """`(steps, ended)`: the (epoch, step) pairs trained and the epochs ended."""
    steps, ended = [], []
    for line in open(path).read().split("\n"):
        kind, *numbers = line.split() or [""]
        if kind == "step":
            steps.append(tuple(int(n) for n in numbers))
        elif kind == "end":
            ended.append(int(numbers[0]))
    return steps, ended


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("progress")
    parser.add_argument("--pause-at")
    args, cli_args = parser.parse_known_args(argv)
    pause_at = tuple(int(n) for n in args.pause_at.split(":")) if args.pause_at else None

    from keras_crl import cli
    from keras_crl import train as train_lib

    run = train_lib.train

    def train_with_probe(config, callbacks=()):
        return run(config, callbacks=[*callbacks, Probe(args.progress, pause_at)])

    train_lib.train = train_with_probe
    return cli.main([a for a in cli_args if a != "--"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
