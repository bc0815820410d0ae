"""One function that runs a configured training into a run folder.

    data set -> BatchPipeline -> zoo model -> compile(loss, recipe) -> fit
    -> run folder: config.json, log.csv, best/last weights, metrics.json, plots

A run folder is self-describing: `config.json` holds the resolved
configuration, and `state.npz` (rewritten atomically after every epoch) holds
the weights, optimizer state and epoch, so `resume=True` continues an
interrupted run exactly where its last finished epoch left it, on any
backend.
"""

import dataclasses
import json
import sys
from pathlib import Path

import keras
import numpy as np

from keras_crl import data as data_lib
from keras_crl import models as models_lib
from keras_crl import parallel
from keras_crl import run_folder
from keras_crl.callbacks import BestWeights
from keras_crl.callbacks import EpochTimer
from keras_crl.callbacks import StateCheckpoint
from keras_crl.callbacks import StopOnNaN
from keras_crl.losses import CompetingRatioLoss
from keras_crl.losses import NegativeLogLikelihoodRatioLoss
from keras_crl.recipes import get_recipe
from keras_crl.reproducible import make_deterministic
from keras_crl.reproducible import numpy_initialise

LOSSES = ("crl", "nllr", "ce")

# The recipe's crop-and-flip is written for 32x32 natural images. Digits are
# not mirror-symmetric, and a 4-pixel shift wipes out an 8x8 digit.
AUGMENTATION = {
    "digits": {"pad": 1, "flip": False},
    "svhn": {"flip": False},
}
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run.

    Args:
        model: A name from `keras_crl.models.list_models()`.
        dataset: A name from `keras_crl.data.list_datasets()`.
        loss: `"crl"`, `"nllr"` or `"ce"`.
        alpha: CRL's alpha.
        beta: CRL's beta.
        label_smoothing: Label smoothing of any loss.
        recipe: `"paper"` or `"cosine"`; the fields below override it.
        epochs, batch_size, learning_rate, momentum, weight_decay, schedule,
        milestones, augment: Recipe overrides (`None` keeps the recipe's).
        seed: Seed of the initial weights, the data order and augmentation.
        validation_split: Fraction of the training data held out for model
            selection.
        data_dir: Where data sets are looked for / downloaded.
        dataset_options: Extra arguments of the data set loader.
        model_options: Extra arguments of the model builder (e.g.
            `weights="imagenet"`, `freeze_backbone=True` for `keras_app_*`).
        limit: Use only the first `limit` training images (quick runs).
        init_weights: A `.weights.h5` file to start from instead of the
            seeded NumPy initialisation.
        run_dir: The run folder.
        jit: Compile the train step (`jit_compile`); `"auto"` lets Keras
            choose.
        precision: `"float32"`, `"mixed_float16"` or `"mixed_bfloat16"`.
        devices: Data-parallel replicas: `keras.distribution.DataParallel` on
            JAX, `tf.distribute.MirroredStrategy` on TensorFlow,
            DistributedDataParallel on torch (one process per device, started
            by torchrun; see `keras_crl.parallel`). The batch size is the
            global batch, split across the devices.
        data_format: `"channels_last"` or `"channels_first"`.
        resume: Continue from `run_dir/state.npz` if it exists.
        verbose: Keras' progress bar (1), one line per epoch (2), or none.
    """

    model: str = "small_cnn"
    dataset: str = "digits"
    loss: str = "crl"
    alpha: float = 0.0
    beta: float = 0.25
    label_smoothing: float = 0.0
    recipe: str = "paper"
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    milestones: tuple | None = None
    augment: bool | None = None
    seed: int = 0
    validation_split: float = 0.1
    data_dir: str | None = None
    dataset_options: dict = dataclasses.field(default_factory=dict)
    model_options: dict = dataclasses.field(default_factory=dict)
    limit: int | None = None
    init_weights: str | None = None
    run_dir: str = "runs/latest"
    jit: bool | str = "auto"
    precision: str = "float32"
    devices: int = 1
    data_format: str = "channels_last"
    resume: bool = False
    verbose: int = 1

    def resolved_recipe(self):
        return get_recipe(
            self.recipe,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            milestones=self.milestones,
            augment=self.augment,
        )


def make_loss(name, alpha=0.0, beta=0.25, label_smoothing=0.0):
    """The named loss on logits: `"crl"`, `"nllr"` or `"ce"`."""
    if name == "crl":
        return CompetingRatioLoss(
            alpha=alpha, beta=beta, from_logits=True, label_smoothing=label_smoothing
        )
    if name == "nllr":
        return NegativeLogLikelihoodRatioLoss(from_logits=True, label_smoothing=label_smoothing)
    if name == "ce":
        # CRL with beta = 0 is cross-entropy, with the same label handling
        # (integer labels and label smoothing) as the other two.
        return CompetingRatioLoss(
            beta=0.0,
            from_logits=True,
            label_smoothing=label_smoothing,
            name="cross_entropy",
        )
    raise ValueError(f"Unknown loss {name!r}. Valid losses: {', '.join(LOSSES)}.")


def check_config(config):
    """Fails fast, before any data is read, on names and values."""
    if config.loss not in LOSSES:
        raise ValueError(f"Unknown loss {config.loss!r}. Valid losses: {', '.join(LOSSES)}.")
    if config.model not in models_lib.list_models():
        raise ValueError(
            f"Unknown model {config.model!r}. Valid models: {', '.join(models_lib.list_models())}."
        )
    if config.dataset not in data_lib.list_datasets():
        raise ValueError(
            f"Unknown dataset {config.dataset!r}. Valid datasets: "
            f"{', '.join(data_lib.list_datasets())}."
        )
    if not isinstance(config.devices, int) or config.devices < 1:
        raise ValueError(
            f"`devices` must be a positive integer. Received: devices={config.devices!r}"
        )
    if config.precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {config.precision!r}. Valid: {', '.join(PRECISIONS)}.")
    make_loss(config.loss, config.alpha, config.beta, config.label_smoothing)
    config.resolved_recipe()


def train(config, callbacks=()):
    """Trains `config.model` on `config.dataset` into `config.run_dir`.

    Args:
        config: A `TrainConfig`.
        callbacks: Extra Keras callbacks.

    Returns:
        The final metrics (also written to `metrics.json`): test accuracy and
        loss of the best-on-validation weights, best epoch, time per epoch and
        images per second.

    The dtype policy and the distribution are restored when it returns. The
    determinism switches stay on (`reproducible.make_deterministic`: seeded
    Python, NumPy and backend generators, TensorFlow op determinism, torch
    deterministic algorithms, TF32 off): they are process-wide and cannot be
    undone on every backend.

    Example:

    ```python
    from keras_crl.train import TrainConfig, train
    metrics = train(TrainConfig(model="small_cnn", dataset="digits", epochs=5))
    ```
    """
    check_config(config)
    recipe = config.resolved_recipe()
    run_dir = Path(config.run_dir)
    if parallel.is_chief():
        run_dir.mkdir(parents=True, exist_ok=True)
    make_deterministic(config.seed)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(config.precision)
    try:
        with parallel.data_parallel(config.devices):
            return _train(config, recipe, run_dir, list(callbacks))
    finally:
        keras.config.set_dtype_policy(policy)


def _train(config, recipe, run_dir, callbacks):
    ds = data_lib.load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        validation_split=config.validation_split,
        seed=config.seed,
        **config.dataset_options,
    )
    x_train, y_train = ds.x_train, ds.y_train
    if config.limit:
        x_train, y_train = x_train[: config.limit], y_train[: config.limit]

    state_path = run_dir / "state.npz"
    initial_epoch = 0
    resuming = config.resume and state_path.exists()
    if resuming:
        initial_epoch = run_folder.state_epoch(state_path)

    # Split across devices or processes, every batch must divide evenly: the
    # last partial batch is dropped (metrics.json counts the test images).
    split = parallel.splits_batches(config.devices)
    pipeline = dict(
        mean=ds.mean,
        std=ds.std,
        num_classes=ds.num_classes,
        data_format=config.data_format,
        drop_remainder=split,
    )
    augmentation = {"pad": recipe.pad, "flip": True, **AUGMENTATION.get(config.dataset, {})}
    train_data = data_lib.BatchPipeline(
        x_train,
        y_train,
        recipe.batch_size,
        augment=recipe.augment,
        shuffle=True,
        seed=config.seed,
        initial_epoch=initial_epoch,
        **augmentation,
        **pipeline,
    )
    # Several processes: each trains on its share of the batch; only the chief
    # writes the run folder.
    chief = parallel.is_chief()
    val_data = data_lib.BatchPipeline(ds.x_val, ds.y_val, recipe.batch_size, **pipeline)
    test_data = data_lib.BatchPipeline(ds.x_test, ds.y_test, recipe.batch_size, **pipeline)

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
        numpy_initialise(model, config.seed)
    # `trainer` shares `model`'s variables; weights files go through `model`.
    trainer = parallel.for_training(model)
    trainer.compile(
        optimizer=recipe.optimizer(len(train_data)),
        loss=make_loss(config.loss, config.alpha, config.beta, config.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit,
    )
    if resuming:
        run_folder.load_state(trainer, state_path)

    if resuming and chief:
        run_folder.truncate_log(run_dir / "log.csv", initial_epoch)
    if chief:
        run_folder.write_json(run_dir / "config.json", describe(config, recipe, ds))
    timer = EpochTimer(len(y_train))
    writers = (
        [
            keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=resuming),
            BestWeights(run_dir / "best.weights.h5", resume=resuming, weights_of=model),
            StateCheckpoint(state_path),
        ]
        if chief
        else []
    )
    callbacks = [
        parallel.AverageReplicas(),
        data_lib.EpochSync(train_data),
        StopOnNaN(),
        *writers,
        timer,
        *callbacks,
    ]
    if initial_epoch < recipe.epochs:
        trainer.fit(
            parallel.shard(train_data),
            validation_data=parallel.shard(val_data, training=False) if len(ds.y_val) else None,
            epochs=recipe.epochs,
            initial_epoch=initial_epoch,
            # The pipeline shuffles, seeded by epoch; Keras' own batch
            # shuffle would draw from Python's global random state.
            shuffle=False,
            callbacks=callbacks,
            verbose=config.verbose if chief else 0,
        )
    if chief:
        with parallel.alone():
            model.save_weights(run_dir / "last.weights.h5")
    parallel.barrier()  # the chief's files are complete

    best_path = run_dir / "best.weights.h5"
    if best_path.exists():
        model.load_weights(best_path)
    test_loss, test_accuracy = trainer.evaluate(
        parallel.shard(test_data, training=False), verbose=0
    )
    log = run_folder.read_log(run_dir / "log.csv")
    best_epoch = int(np.argmax(log["val_accuracy"])) if "val_accuracy" in log else None
    metrics = {
        "backend": keras.backend.backend(),
        "model": config.model,
        "dataset": config.dataset,
        "loss": config.loss,
        "alpha": config.alpha,
        "beta": config.beta,
        "seed": config.seed,
        "epochs": recipe.epochs,
        "test_accuracy": float(test_accuracy),
        "test_images": len(test_data) * recipe.batch_size if split else len(ds.y_test),
        "test_loss": float(test_loss),
        "best_epoch": best_epoch,
        "best_val_accuracy": float(log["val_accuracy"][best_epoch])
        if best_epoch is not None
        else None,
        "final_train_loss": float(log["loss"][-1]) if "loss" in log else None,
        "seconds_per_epoch": timer.median_seconds(),
        "images_per_second": timer.images_per_second(),
    }
    if chief:
        run_folder.write_json(run_dir / "metrics.json", metrics)
        run_folder.plot_curves(log, run_dir)
    return metrics


def describe(config, recipe, ds):
    """The resolved configuration written to `config.json`."""
    return {
        "config": dataclasses.asdict(config),
        "recipe": dataclasses.asdict(recipe),
        "milestones_used": list(recipe.scaled_milestones()),
        "dataset": {
            "num_classes": ds.num_classes,
            "input_shape": list(ds.input_shape),
            "train": len(ds.y_train) if not config.limit else min(config.limit, len(ds.y_train)),
            "val": len(ds.y_val),
            "test": len(ds.y_test),
            "mean": list(ds.mean),
            "std": list(ds.std),
        },
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
    }


def main(argv=None):
    """`python -m keras_crl.train CONFIG.json`: `train()` in a process of its own.

    How `compare_backends` (and anything else that needs another Keras
    backend) trains: the file holds `dataclasses.asdict(TrainConfig(...))`,
    and the process's backend is its `KERAS_BACKEND`.
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m keras_crl.train CONFIG.json")
    train(TrainConfig(**json.loads(Path(argv[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
