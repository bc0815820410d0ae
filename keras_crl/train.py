"""One function that runs a configured training into a run folder.

    data set -> BatchPipeline -> zoo model -> compile(loss, recipe) -> fit
    -> run folder: config.json, log.csv, best/last weights, metrics.json, plots

A run folder is self-describing and holds one configuration: `config.json`
holds the resolved configuration (and every resume), and `state.npz`
(rewritten atomically after every epoch and every `checkpoint_seconds` /
`checkpoint_steps` inside one) holds the weights, optimizer state, position
(epoch and step) and the epoch's metric totals, so `resume=True` continues an
interrupted run exactly at the step after its last checkpoint, on any
backend, and only with the settings it was trained with.
"""

import dataclasses
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from keras_crl import _keras_compat
from keras_crl import backends
from keras_crl import data as data_lib
from keras_crl import models as models_lib
from keras_crl import parallel
from keras_crl import run_folder
from keras_crl.calibration import ExpectedCalibrationError
from keras_crl.calibration import calibration_metrics
from keras_crl.callbacks import BestWeights
from keras_crl.callbacks import EpochTimer
from keras_crl.callbacks import PaddedValLoss
from keras_crl.callbacks import RestoreEpochState
from keras_crl.callbacks import StateCheckpoint
from keras_crl.callbacks import StopOnNaN
from keras_crl.config import USER_ERRORS
from keras_crl.config import TrainConfig
from keras_crl.config import check_config
from keras_crl.config import config_loss
from keras_crl.config import loss_parameters
from keras_crl.loss_factory import check_loss
from keras_crl.metrics import benchmark_metrics
from keras_crl.reproducible import make_deterministic
from keras_crl.reproducible import numpy_initialize
from keras_crl.reproducible import op_determinism
from keras_crl.resume import resumed_config

__all__ = ["TrainConfig", "check_config", "train"]


@dataclasses.dataclass
class _Resume:
    """Where a run folder's checkpoint stands, and what resuming it changes."""

    epoch: int = 0
    step: int = 0
    trained: dict | None = None  # the run folder's config.json
    changes: dict = dataclasses.field(default_factory=dict)

    @property
    def resuming(self):
        return self.trained is not None


def train(config, callbacks=()):
    """Trains `config.model` on `config.dataset` into `config.run_dir`.

    Args:
        config: A `TrainConfig`.
        callbacks: Extra Keras callbacks.

    Returns:
        The final metrics (also written to `metrics.json`): test accuracy and
        loss of the best-on-validation weights, best epoch, time per epoch,
        images per second, and the backends that trained the weights. A
        resumed run that has nothing left to train returns its
        `metrics.json` as it is.

    Raises:
        keras_crl.config.ConfigError: A field of `config` is out of range.
        ValueError: `config.resume` and the run folder was trained with
            other settings (`keras_crl.resume.resumed_config`).

    The dtype policy and the distribution are restored when it returns. The
    process-wide switches of `reproducible.make_deterministic` stay as the
    run set them: seeded Python, NumPy and backend generators, TF32 off, and
    deterministic kernels on or off as `config.deterministic` says. A run
    that fails before training leaves no run folder behind.

    Example:

    ```python
    from keras_crl.train import TrainConfig, train
    metrics = train(TrainConfig(model="small_cnn", dataset="digits", epochs=5))
    ```
    """
    check_config(config)
    config, resume = _resume(config)
    recipe = config.resolved_recipe()
    if resume.resuming and run_folder.finished(config.run_dir, recipe.epochs):
        return json.loads((Path(config.run_dir) / "metrics.json").read_text())
    make_deterministic(config.seed, ops=config.deterministic)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        with parallel.data_parallel(config.devices):
            return _train(config, recipe, resume, list(callbacks))
    finally:
        keras.config.set_dtype_policy(policy)


def _resume(config):
    """The configuration to train and the checkpoint it continues, if any."""
    state_path = Path(config.run_dir) / "state.npz"
    if not (config.resume and state_path.exists()):
        return config, _Resume()
    epoch, step = run_folder.state_position(state_path)
    trained = json.loads((Path(config.run_dir) / "config.json").read_text())
    config, changes = resumed_config(trained, config, epoch)
    return config, _Resume(epoch, step, trained, changes)


def _train(config, recipe, resume, callbacks):
    parallel.checks_epoch_ends_only(config.checkpoint_steps, config.checkpoint_seconds, resume.step)
    ds, train_data, val_data, test_data = _data(config, recipe, resume.epoch)
    model = _model(config, ds)
    # `trainer` shares `model`'s variables; weights files go through `model`.
    trainer = _compiled(config, recipe, model, len(train_data))
    run_dir = Path(config.run_dir)
    rank = parallel.rank()
    if resume.resuming:
        run_folder.load_state(trainer, run_dir / "state.npz", rank)
    if resume.step:
        # RestoreEpochState needs the metrics' variables in `on_epoch_begin`.
        _keras_compat.build_metrics(trainer, parallel.shard(train_data)[0])
    chief = parallel.is_chief()
    if chief:
        _open_run_folder(run_dir, config, recipe, ds, resume, ran(trainer))
    timer = EpochTimer(len(ds.y_train[: config.limit]))
    fit = dict(
        validation_data=parallel.shard(val_data, training=False) if len(ds.y_val) else None,
        # The pipeline shuffles, seeded by epoch; Keras' own batch
        # shuffle would draw from Python's global random state.
        shuffle=False,
        callbacks=[
            PaddedValLoss(_loss_scale(trainer, val_data)),
            *_callbacks(config, model, train_data, resume, timer, chief),
            *callbacks,
        ],
        verbose=config.verbose if chief else 0,
    )
    _fit(trainer, parallel.shard(train_data), recipe.epochs, resume, fit)
    if chief:
        with parallel.alone():
            model.save_weights(run_dir / "last.weights.h5")
    parallel.barrier()  # the chief's files are complete
    return _evaluate(config, recipe, model, trainer, (ds, test_data), resume, timer, chief)


def _data(config, recipe, initial_epoch):
    """The data set and its train, validation and test pipelines."""
    ds = data_lib.load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        validation_split=config.validation_split,
        seed=config.seed,
        **config.dataset_options,
    )
    # Split across devices or processes, every batch must divide evenly: the
    # last partial batch is dropped (metrics.json counts the test images).
    common = dict(
        data_format=config.data_format,
        drop_remainder=parallel.splits_batches(config.devices),
    )
    # Several processes: each makes (a streaming folder: decodes) only its
    # own slice of every global training batch.
    shard_index, shard_count = parallel.process_index_and_count()
    train_data = ds.pipeline(
        "train",
        recipe.batch_size,
        limit=config.limit,
        augment=recipe.augment,
        shuffle=True,
        seed=config.seed,
        initial_epoch=initial_epoch,
        shard_index=shard_index,
        shard_count=shard_count,
        **common,
    )
    val_data, test_data = (
        _evaluated(ds, split, recipe.batch_size, config) for split in ("val", "test")
    )
    return ds, train_data, val_data, test_data


def _evaluated(ds, split, batch_size, config):
    """A validation or test split's batches: every image counted once.

    Split across devices or processes, the last partial batch is padded
    (data.PaddedBatches), where training drops it.
    """
    batches = ds.pipeline(split, batch_size, data_format=config.data_format)
    if not parallel.splits_batches(config.devices):
        return batches
    images = len(ds.y_val if split == "val" else ds.y_test)
    return data_lib.PaddedBatches(batches, batch_size, images=images)


def _loss_scale(trainer, batches):
    """What turns Keras' loss mean over padded batches into the images' mean."""
    padded = isinstance(batches, data_lib.PaddedBatches)
    summed = getattr(trainer.loss, "reduction", None) == "sum_over_batch_size"
    return batches.loss_scale if padded and summed else 1.0


def _model(config, ds):
    """The zoo model with its initial weights: a file, pretrained, or seeded."""
    input_shape = ds.input_shape
    if config.data_format == "channels_first":
        input_shape = (input_shape[2], input_shape[0], input_shape[1])
    model = models_lib.get_model(
        config.model,
        num_classes=ds.num_classes,
        input_shape=input_shape,
        data_format=config.data_format,
        **config.model_options,
    )
    if config.init_weights:
        run_folder.load_weights(model, config.init_weights)
    elif not config.model_options.get("weights"):
        # Pretrained weights stay; everything else starts the same everywhere.
        numpy_initialize(model, config.seed)
    return model


def _compiled(config, recipe, model, steps_per_epoch):
    """The model (or its data-parallel wrapper) compiled with the loss and recipe."""
    trainer = parallel.for_training(model)
    loss = config_loss(config)
    check_loss(loss, config.loss)
    trainer.compile(
        optimizer=recipe.optimizer(steps_per_epoch, models_lib.head_variables(model)),
        loss=loss,
        # Weighted: padded evaluation batches weigh their padding 0
        # (data.PaddedBatches); training batches carry no weights.
        weighted_metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            *benchmark_metrics(config.dataset),
            # The zoo's models give logits (models.common's head).
            *calibration_metrics(from_logits=True),
        ],
        jit_compile=config.jit,
    )
    return trainer


def _open_run_folder(run_dir, config, recipe, ds, resume, what_ran):
    """Writes `config.json`; a fresh run first clears a former run's files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume.resuming:
        run_folder.truncate_log(run_dir / "log.csv", resume.epoch)
    else:
        run_folder.clear(run_dir)
    description = {**describe(config, recipe, ds, resume), "ran": what_ran}
    run_folder.write_json(run_dir / "config.json", description)


def _callbacks(config, model, train_data, resume, timer, chief):
    run_dir = Path(config.run_dir)
    state_path = run_dir / "state.npz"
    writers = (
        [
            keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=resume.resuming),
            BestWeights(run_dir / "best.weights.h5", resume=resume.resuming, weights_of=model),
        ]
        if chief
        else []
    )
    # Every process runs it: they save at the same steps, only the chief writes.
    checkpoint = StateCheckpoint(
        state_path,
        len(train_data),
        every_steps=config.checkpoint_steps,
        every_seconds=config.checkpoint_seconds,
        keep=config.keep_checkpoints,
        start=(resume.epoch, resume.step),
        write=chief,
    )
    callbacks = [
        parallel.AverageReplicas(),
        data_lib.EpochSync(train_data),
        RestoreEpochState(state_path, resume.epoch, parallel.rank()) if resume.step else None,
        StopOnNaN(),
        *writers,
        checkpoint,
        timer,
    ]
    return [c for c in callbacks if c is not None]


def _fit(trainer, batches, epochs, resume, fit):
    """Trains from the checkpoint's position (or the start) to `epochs`."""
    initial_epoch = resume.epoch
    try:
        if resume.step and initial_epoch < epochs:
            # Resumed inside an epoch: its remaining steps alone, then the rest.
            data = data_lib.EpochRemainder(batches, resume.step)
            trainer.fit(data, epochs=initial_epoch + 1, initial_epoch=initial_epoch, **fit)
            initial_epoch += 1
        if initial_epoch < epochs and not getattr(trainer, "stop_training", False):
            trainer.fit(batches, epochs=epochs, initial_epoch=initial_epoch, **fit)
    finally:
        # A run that raises (StopOnNaN) ends without Keras' `on_train_end`,
        # which is where CSVLogger closes log.csv.
        for callback in fit["callbacks"]:
            if isinstance(callback, keras.callbacks.CSVLogger) and callback.csv_file:
                callback.csv_file.close()


def _evaluate(config, recipe, model, trainer, test, resume, timer, chief):
    """Test metrics of the best-on-validation weights, written to `metrics.json`."""
    ds, test_data = test
    run_dir = Path(config.run_dir)
    best_path = run_dir / "best.weights.h5"
    if best_path.exists():
        model.load_weights(best_path)
    test = trainer.evaluate(parallel.shard(test_data, training=False), verbose=0, return_dict=True)
    # Read on every process: under TensorFlow across processes reading a
    # metric variable is a collective.
    bins = _calibration_bins(trainer)
    log = run_folder.read_log(run_dir / "log.csv")
    best_epoch = int(np.argmax(log["val_accuracy"])) if "val_accuracy" in log else None
    alpha, beta = loss_parameters(config)
    metrics = {
        "backend": keras.backend.backend(),
        "trained_on": _trained_on(resume),
        "model": config.model,
        "dataset": config.dataset,
        "loss": config.loss,
        "alpha": alpha,
        "beta": beta,
        "label_smoothing": config.label_smoothing,
        "loss_options": config.loss_options,
        "seed": config.seed,
        "epochs": recipe.epochs,
        "test_accuracy": float(test["accuracy"]),
        # The images the evaluation counted (the ECE's bins hold every
        # weighted image once), not the split's length: a dropped batch shows.
        "test_images": round(sum(bins["counts"])) if bins else len(ds.y_test),
        "test_loss": float(test["loss"]) * _loss_scale(trainer, test_data),
        # The benchmark's own measures (keras_crl.metrics.benchmark_metrics)
        # and the calibration figures (ece, nll, brier, confidence).
        **{f"test_{k}": float(v) for k, v in test.items() if k not in ("loss", "accuracy")},
        "test_calibration_bins": bins,
        "best_epoch": best_epoch,
        "best_val_accuracy": float(log["val_accuracy"][best_epoch])
        if best_epoch is not None
        else None,
        "final_train_loss": float(log["loss"][-1]) if "loss" in log else None,
        "seconds_per_epoch": timer.median_seconds(),
        "images_per_second": timer.images_per_second(),
        "ran": ran(trainer),
    }
    if chief:
        run_folder.write_json(run_dir / "metrics.json", metrics)
        run_folder.plot_curves(log, run_dir)
    return metrics


def _calibration_bins(trainer):
    """The test ECE's per-bin sums (`ExpectedCalibrationError.bin_totals`),
    which a study pools over runs for its reliability diagrams."""
    # Keras nests the compiled metrics in `model.metrics`' container.
    metrics = list(trainer.metrics)
    while metrics:
        metric = metrics.pop()
        if isinstance(metric, ExpectedCalibrationError):
            return metric.bin_totals()
        metrics.extend(getattr(metric, "metrics", []))
    return None


def ran(trainer):
    """What a run really ran, for `config.json` and `metrics.json`: whether
    its step is compiled (Keras' resolved `jit_compile`, which Keras turns
    from `True` to `False` with only a warning where it cannot compile) and
    whether deterministic kernels are on."""
    return {"jit": bool(trainer.jit_compile), "deterministic": op_determinism()}


def _trained_on(resume):
    """The backends that trained the weights, in order, this one last."""
    backends = list(resume.trained.get("trained_on", [])) if resume.resuming else []
    if not backends and resume.resuming:
        backends = [resume.trained["backend"]]
    if keras.backend.backend() not in backends[-1:]:
        backends.append(keras.backend.backend())
    return backends


def describe(config, recipe, ds, resume=None):
    """The resolved configuration written to `config.json`.

    A resumed run keeps the history of its run folder: `resumes` lists each
    resume (time, backend, the position it resumed at and what it changed),
    and `trained_on` the backends that trained the weights.
    """
    resume = resume or _Resume()
    resumes = list(resume.trained.get("resumes", [])) if resume.resuming else []
    if resume.resuming:
        resumes.append(
            {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "backend": keras.backend.backend(),
                "epoch": resume.epoch,
                "step": resume.step,
                "changed": resume.changes,
            }
        )
    return {
        "config": dataclasses.asdict(config),
        "recipe": dataclasses.asdict(recipe),
        "milestones_used": list(recipe.scaled_milestones()),
        "dataset": {
            "num_classes": ds.num_classes,
            "input_shape": list(ds.input_shape),
            "train": len(ds.y_train[: config.limit]),
            "val": len(ds.y_val),
            "test": len(ds.y_test),
            "mean": list(ds.mean),
            "std": list(ds.std),
        },
        "backend": keras.backend.backend(),
        "trained_on": _trained_on(resume),
        "resumes": resumes,
        "keras": keras.__version__,
    }


def main(argv=None):
    """`python -m keras_crl.train CONFIG.json`: `train()` in a process of its own.

    How `compare_backends` (and anything else that needs another Keras
    backend) trains: the file holds `dataclasses.asdict(TrainConfig(...))`,
    and the process's backend is its `KERAS_BACKEND`. A user's mistake (a
    bad setting, a missing data set) ends it with one line on stderr and
    exit status 2, which the parent reports as that line.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m keras_crl.train CONFIG.json")
    config = TrainConfig(**json.loads(Path(argv[0]).read_text()))
    try:
        train(config)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return backends.USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
