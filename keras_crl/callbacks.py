"""The callbacks `train()` adds to `fit`: run-folder writers, NaN stop, timer.

Two more live beside what they serve: `keras_crl.data.EpochSync` (keeps a
`BatchPipeline`'s epoch equal to Keras') and
`keras_crl.parallel.AverageReplicas` (torch processes agree on what is not a
gradient).
"""

import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from keras_crl import parallel
from keras_crl import run_folder


class StateCheckpoint(keras.callbacks.Callback):
    """Saves the full training state atomically: after every epoch, and
    inside epochs every `every_steps` steps and/or `every_seconds` seconds.

    Hand-written because Keras' `BackupAndRestore` keeps its own files and
    deletes them when training ends, and restores only the epoch number from
    a mid-epoch save (it then replays the epoch from its first batch with
    weights already updated); `state.npz` (`run_folder.save_state`) stays in
    the run folder, holds the position inside the epoch and the epoch's
    metric totals, and resumes on any backend.

    In several torch processes every process runs it: they agree on when to
    save (the chief's clock decides a time-based save), each process's own
    batch-norm statistics and metric totals are gathered to the chief (which
    also waits for all of them to reach the step), and only the chief writes.

    Args:
        path: The `state.npz` to write.
        steps_per_epoch: Steps in one epoch.
        every_steps: Save inside an epoch after this many steps (None: no).
        every_seconds: Save inside an epoch once this much training time has
            passed since the last save (None: no).
        keep: Checkpoints to keep (`run_folder.save_state`).
        start: `(epoch, step)` this `fit` starts at: the step numbers Keras
            passes for `epoch` then count from `step`.
        write: Whether this process writes (the chief).
    """

    def __init__(
        self,
        path,
        steps_per_epoch=None,
        every_steps=None,
        every_seconds=None,
        keep=1,
        start=(0, 0),
        write=True,
    ):
        super().__init__()
        self.path = path
        self.steps_per_epoch = steps_per_epoch
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self.keep = keep
        self.start = start
        self.write = write
        self.epoch, self.offset = start
        self.since, self.last = 0, time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.offset = self.start[1] if epoch == self.start[0] else 0

    def on_train_batch_end(self, batch, logs=None):
        self.since += 1
        done = self.offset + batch + 1
        if self.steps_per_epoch is not None and done >= self.steps_per_epoch:
            return  # the end-of-epoch checkpoint follows
        due = self.every_steps is not None and self.since >= self.every_steps
        if self.every_seconds is not None and not due:
            due = parallel.chief_decides(time.monotonic() - self.last >= self.every_seconds)
        if due:
            self._save(self.epoch, done)

    def on_epoch_end(self, epoch, logs=None):
        if not (logs and math.isnan(logs.get("loss", 0.0))):
            self._save(epoch + 1, 0)

    def _save(self, epoch, step):
        model = self.model
        replicas = parallel.gather_to_chief(
            [
                [keras.ops.convert_to_numpy(v) for v in model.non_trainable_weights],
                [keras.ops.convert_to_numpy(v) for v in model.metrics_variables],
            ]
        )
        if self.write:
            run_folder.save_state(model, epoch, self.path, step, self.keep, replicas)
        self.since, self.last = 0, time.monotonic()


class RestoreEpochState(keras.callbacks.Callback):
    """Gives a resumed epoch the metric totals of its steps before the checkpoint.

    `fit` resets the metrics before `on_epoch_begin`; this then loads the
    interrupted epoch's running loss mean and accuracy counts, so the epoch
    logs what an uninterrupted run would.

    Args:
        path: The checkpoint.
        epoch: The epoch it interrupted.
        rank: This process's rank (its own totals, under torch DDP).
    """

    def __init__(self, path, epoch, rank=0):
        super().__init__()
        self.path, self.epoch, self.rank = path, epoch, rank

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            run_folder.load_metric_state(self.model, self.path, self.rank)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the best validation accuracy (ties: earliest).

    Hand-written because Keras' `ModelCheckpoint` writes in place (a kill
    during the write loses the best weights) and saves the model `fit`
    sees, which under torch DDP is the wrapper, not the model.

    Args:
        path: The `.weights.h5` file to write.
        resume: Continue a run: only beat the best recorded before.
        weights_of: The model whose weights to save (default: `fit`'s).
    """

    def __init__(self, path, resume=False, weights_of=None):
        super().__init__()
        self.path = Path(path)
        self.weights_of = weights_of
        self.best = -1.0
        if resume and self.path.with_suffix(".json").exists():
            self.best = json.loads(self.path.with_suffix(".json").read_text())["val_accuracy"]

    def on_epoch_end(self, epoch, logs=None):
        accuracy = (logs or {}).get("val_accuracy")
        if accuracy is None or not accuracy > self.best:
            return
        self.best = float(accuracy)
        tmp = self.path.with_name(self.path.name.replace(".weights.h5", ".tmp.weights.h5"))
        with parallel.alone():  # only the chief writes: no collective here
            (self.weights_of or self.model).save_weights(tmp)
        os.replace(tmp, self.path)
        run_folder.write_json(
            self.path.with_suffix(".json"), {"epoch": epoch, "val_accuracy": self.best}
        )


class StopOnNaN(keras.callbacks.Callback):
    """Stops at the first non-finite loss, naming the epoch and step.

    The last state checkpoint, saved before the bad step, is kept untouched.
    Hand-written because `keras.callbacks.TerminateOnNaN(raise_error=True)`
    names only the batch, not the epoch, and raises a bare `RuntimeError`;
    this raises `FloatingPointError`, which the study records as a failed run.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.model.stop_training = True
            raise FloatingPointError(
                f"The loss became {loss} at epoch {self.epoch + 1}, step {batch + 1}. "
                "The last good checkpoint (state.npz, saved before this step) is kept; lower "
                "the learning rate or check the data."
            )


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch, for time per epoch and images per second.

    Args:
        num_images: Training images per epoch.
    """

    def __init__(self, num_images):
        super().__init__()
        self.num_images = num_images
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)

    def median_seconds(self):
        # The first epoch carries compilation; leave it out when we can.
        times = self.seconds[1:] or self.seconds
        return float(np.median(times)) if times else None

    def images_per_second(self):
        median = self.median_seconds()
        return self.num_images / median if median else None


__all__ = [
    "BestWeights",
    "PaddedValLoss",
    "EpochTimer",
    "RestoreEpochState",
    "StateCheckpoint",
    "StopOnNaN",
]


class PaddedValLoss(keras.callbacks.Callback):
    """`val_loss` as the mean over the validation images, not their padded batches.

    Keras' loss mean weighs every batch by its size, padding included, so
    with `data.PaddedBatches` (several devices) it is `loss_scale` times too
    small. Listed before the callbacks that read `val_loss` (`CSVLogger`,
    `History`), it corrects the value they see. With `scale=1.0` it does
    nothing.

    Args:
        scale: `PaddedBatches.loss_scale` of the validation batches.

    Example:

    >>> logs = {"val_loss": 0.5}
    >>> PaddedValLoss(1.2).on_epoch_end(0, logs)
    >>> logs["val_loss"]
    0.6
    """

    def __init__(self, scale):
        super().__init__()
        self.scale = float(scale)

    def on_epoch_end(self, epoch, logs=None):
        if logs and "val_loss" in logs and self.scale != 1.0:
            logs["val_loss"] = float(logs["val_loss"]) * self.scale
