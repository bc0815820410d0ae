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
    """Saves the full training state after every epoch, atomically.

    Hand-written because Keras' `BackupAndRestore` keeps its own files and
    deletes them when training ends; `state.npz` (`run_folder.save_state`)
    stays in the run folder and resumes on any backend.

    Args:
        path: The `state.npz` to write.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        if not (logs and math.isnan(logs.get("loss", 0.0))):
            run_folder.save_state(self.model, epoch + 1, self.path)


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

    The state checkpoint of the last finished epoch is kept untouched.
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
                "The last good checkpoint (end of the previous epoch) is kept; lower "
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
