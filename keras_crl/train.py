"""One function that runs a configured training into a run folder.

    data set -> BatchPipeline -> zoo model -> compile(loss, recipe) -> fit
    -> run folder: config.json, log.csv, best/last weights, metrics.json, plots

A run folder is self-describing: `config.json` holds the resolved
configuration, and `state.npz` (rewritten atomically after every epoch and
every `checkpoint_seconds` / `checkpoint_steps` inside one) holds the
weights, optimizer state, position (epoch and step) and the epoch's metric
totals, so `resume=True` continues an interrupted run exactly at the step
after its last checkpoint, on any backend.
"""

import dataclasses
import importlib
import inspect
import json
import sys
from pathlib import Path

import keras
import numpy as np

from keras_crl import _keras_compat
from keras_crl import data as data_lib
from keras_crl import models as models_lib
from keras_crl import parallel
from keras_crl import run_folder
from keras_crl.callbacks import BestWeights
from keras_crl.callbacks import EpochTimer
from keras_crl.callbacks import RestoreEpochState
from keras_crl.callbacks import StateCheckpoint
from keras_crl.callbacks import StopOnNaN
from keras_crl.losses import CompetingRatioLoss
from keras_crl.losses import NegativeLogLikelihoodRatioLoss
from keras_crl.recipes import get_recipe
from keras_crl.reproducible import make_deterministic
from keras_crl.reproducible import numpy_initialise
from keras_crl.reproducible import op_determinism

LOSSES = ("crl", "nllr", "ce", "focal")

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
        loss: `"crl"`, `"nllr"`, `"ce"`, `"focal"` or a user loss
            `"package.module:Class"` (see `make_loss`).
        alpha: CRL's alpha.
        beta: CRL's beta.
        label_smoothing: Label smoothing of the built-in losses.
        loss_options: Keyword arguments of `"focal"` (`gamma`) or of the
            user loss.
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
        jit: Compile the train step (`jit_compile`): `True` is XLA on
            TensorFlow and JAX; `"auto"` lets Keras choose (XLA on JAX, and on
            TensorFlow with a GPU unless `deterministic`; a graph without XLA
            on a TensorFlow CPU; eager torch); `False` never compiles with
            XLA. `True` is refused, with a `ValueError` naming the flags, on
            TensorFlow when `deterministic` (Keras runs no XLA under
            TensorFlow's op determinism: pass `deterministic=False`) and on
            torch (Keras' torch step calls `loss.backward()` inside the
            function torch.compile traces: it breaks into many graphs and
            recompiles layer by layer; measured in `benchmarks/jit.py`).
            What ran is in `config.json` and `metrics.json` under `"ran"`.
        deterministic: Deterministic kernels (`reproducible.make_deterministic`):
            TensorFlow's op determinism and torch's deterministic algorithms,
            on (default) or off; the seeds are set either way.
        precision: `"float32"`, `"mixed_float16"` or `"mixed_bfloat16"`.
        devices: Data-parallel replicas: `keras.distribution.DataParallel` on
            JAX, `tf.distribute.MirroredStrategy` on TensorFlow,
            DistributedDataParallel on torch (one process per device, started
            by torchrun; see `keras_crl.parallel`). The batch size is the
            global batch, split across the devices.
        data_format: `"channels_last"` or `"channels_first"`.
        resume: Continue from `run_dir/state.npz` if it exists, at the step
            after the checkpoint (inside an epoch too).
        checkpoint_steps: Also checkpoint inside epochs every this many steps.
        checkpoint_seconds: Also checkpoint inside epochs every this many
            seconds of training (default 600; None: only at epoch ends).
        keep_checkpoints: Checkpoints to keep: `state.npz` and the newest
            older ones beside it (`state-EEEE-SSSSSS.npz`).
        verbose: Keras' progress bar (1), one line per epoch (2), or none.
    """

    model: str = "small_cnn"
    dataset: str = "digits"
    loss: str = "crl"
    alpha: float = 0.0
    beta: float = 0.25
    label_smoothing: float = 0.0
    loss_options: dict = dataclasses.field(default_factory=dict)
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
    deterministic: bool = True
    precision: str = "float32"
    devices: int = 1
    data_format: str = "channels_last"
    resume: bool = False
    checkpoint_steps: int | None = None
    checkpoint_seconds: float | None = 600.0
    keep_checkpoints: int = 1
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


def make_loss(name, alpha=0.0, beta=0.25, label_smoothing=0.0, options=None):
    """The named loss, on the zoo's logits and the data's integer labels.

    Args:
        name: `"crl"`, `"nllr"`, `"ce"` (CRL with `beta = 0`, with the same
            label handling), `"focal"` (Keras' `CategoricalFocalCrossentropy`)
            or a user loss `"package.module:Class"`: a `keras.losses.Loss`
            subclass or any class whose instances are called as
            `loss(y_true, y_pred)`. It is built with `options` as keyword
            arguments, plus `from_logits=True` when its constructor takes
            `from_logits` and `options` do not set it.
        alpha, beta: CRL's parameters.
        label_smoothing: Label smoothing (built-in losses).
        options: Keyword arguments of `"focal"` (e.g. `gamma`) or of the
            user loss. `one_hot=True` (user losses) feeds it one-hot targets
            instead of integer labels; focal always gets one-hot targets.

    Returns:
        A loss for `model.compile`.

    Raises:
        ValueError: An unknown name, a module or class that cannot be
            imported, or options the loss does not accept, naming them.
    """
    options = dict(options or {})
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
    if name == "focal":
        return OneHotTargets(
            _construct(
                "focal",
                keras.losses.CategoricalFocalCrossentropy,
                {"from_logits": True, "label_smoothing": label_smoothing, **options},
            )
        )
    if ":" not in name:
        raise ValueError(
            f"Unknown loss {name!r}. Valid losses: {', '.join(LOSSES)}, or a user loss "
            "as package.module:Class."
        )
    one_hot = options.pop("one_hot", False)
    cls = _import_loss(name)
    try:
        takes_from_logits = "from_logits" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        takes_from_logits = False
    if takes_from_logits:
        options.setdefault("from_logits", True)
    loss = _construct(name, cls, options)
    return OneHotTargets(loss) if one_hot else loss


def _import_loss(path):
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"Cannot import the loss {path!r}: {error}") from None
    if not hasattr(module, attribute):
        raise ValueError(f"Module {module_name!r} has no {attribute!r} (loss {path!r}).")
    return getattr(module, attribute)


def _construct(name, cls, options):
    try:
        return cls(**options)
    except (TypeError, ValueError) as error:
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ValueError(f"The loss {name} does not accept ({shown}): {error}") from None


def check_loss(loss, name):
    """Calls `loss` on a tiny batch, as training will, so a loss that cannot
    take the zoo's logits and the data's integer labels fails before any
    run starts, naming it."""
    logits = keras.ops.convert_to_tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    labels = keras.ops.convert_to_tensor([0, 2])
    try:
        value = float(keras.ops.convert_to_numpy(loss(labels, logits)))
    except Exception as error:
        raise ValueError(
            f"The loss {name} fails on integer labels of shape (2,) with logits of shape "
            f"(2, 3), which is what training feeds it ({type(error).__name__}: {error}). "
            "Give it one_hot=True if it needs one-hot targets."
        ) from None
    if not np.isfinite(value):
        raise ValueError(f"The loss {name} gives {value} on a tiny batch of logits.")


class OneHotTargets(keras.losses.Loss):
    """Feeds `loss`, a loss that wants one-hot targets, integer labels.

    Args:
        loss: A `keras.losses.Loss` (its per-sample `call` and reduction are
            used) or a function of `(targets, y_pred)`.

    Example:

    >>> loss = OneHotTargets(keras.losses.CategoricalCrossentropy(from_logits=True))
    >>> round(float(loss([0], [[2.0, 0.0]])), 4)  # log(1 + exp(-2))
    0.1269
    """

    def __init__(self, loss):
        super().__init__(
            name=getattr(loss, "name", None) or "one_hot_targets",
            reduction=getattr(loss, "reduction", "sum_over_batch_size"),
        )
        self.loss = loss

    def call(self, y_true, y_pred):
        y_pred = keras.ops.convert_to_tensor(y_pred)
        labels = keras.ops.cast(y_true, "int32")
        if len(labels.shape) == len(y_pred.shape):
            labels = keras.ops.squeeze(labels, -1)
        targets = keras.ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        per_sample = self.loss.call if isinstance(self.loss, keras.losses.Loss) else self.loss
        return per_sample(targets, y_pred)


def config_loss(config):
    """`make_loss` of a `TrainConfig`."""
    return make_loss(
        config.loss, config.alpha, config.beta, config.label_smoothing, config.loss_options
    )


def check_config(config):
    """Fails fast, before any data is read, on names and values."""
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
    for name in ("checkpoint_steps", "checkpoint_seconds", "keep_checkpoints"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise ValueError(f"`{name}` must be positive. Received: {name}={value!r}")
    check_jit(config.jit, config.deterministic)
    if config.precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {config.precision!r}. Valid: {', '.join(PRECISIONS)}.")
    # Built, not called: a call makes tensors, and TensorFlow can no longer
    # split its CPU for `devices` once it has (`_train` calls it).
    config_loss(config)
    config.resolved_recipe()


def check_jit(jit, deterministic, backend=None):
    """Refuses a `jit=True` that would not run a compiled step on `backend`.

    Example:

    >>> check_jit(True, deterministic=False, backend="tensorflow")
    >>> check_jit(True, deterministic=True, backend="tensorflow")
    Traceback (most recent call last):
    ...
    ValueError: jit=True (--jit on) on TensorFlow needs deterministic=False ...
    """
    backend = backend or keras.backend.backend()
    if jit is not True:
        return
    if backend == "tensorflow" and deterministic:
        raise ValueError(
            "jit=True (--jit on) on TensorFlow needs deterministic=False (--no-deterministic): "
            "under TensorFlow's op determinism Keras runs the step without XLA."
        )
    if backend == "torch":
        raise ValueError(
            "jit=True (--jit on) is refused on torch: torch.compile splits Keras' train step "
            "at loss.backward() and in BatchNormalization, and recompiles it layer by layer "
            "(a first step of a minute, then mostly eager); use --jit off or auto."
        )


def resolved_jit(trainer):
    """Whether `trainer`'s step is compiled (XLA, or torch.compile): Keras'
    resolved `jit_compile` after `compile` (it turns `True` into `False`
    where it cannot compile, with only a warning)."""
    return bool(trainer.jit_compile)


def ran(trainer):
    """What a run really ran, for `config.json` and `metrics.json`."""
    return {"jit": resolved_jit(trainer), "deterministic": op_determinism()}


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
    process-wide switches of `reproducible.make_deterministic` stay as the
    run set them: seeded Python, NumPy and backend generators, TF32 off, and
    deterministic kernels on or off as `config.deterministic` says.

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
    make_deterministic(config.seed, ops=config.deterministic)
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
    # A streaming folder holds file lists, decoded batch by batch.
    streaming = isinstance(ds, data_lib.StreamingFolder)
    limit = config.limit or None
    x_train = None if streaming else ds.x_train[:limit]
    y_train = ds.y_train[:limit]

    state_path = run_dir / "state.npz"
    initial_epoch, start_step = 0, 0
    resuming = config.resume and state_path.exists()
    if resuming:
        initial_epoch, start_step = run_folder.state_position(state_path)
    parallel.checks_epoch_ends_only(config.checkpoint_steps, config.checkpoint_seconds, start_step)

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
    if streaming:
        # Files decoded batch by batch; the augmentation is a random resized
        # crop and flip (data.stream), not the recipe's padded crop.
        # Each process decodes only its own slice of every global batch.
        shard_index, shard_count = parallel.process_index_and_count()
        train_data = ds.pipeline(
            "train",
            recipe.batch_size,
            limit=limit,
            augment=recipe.augment,
            shuffle=True,
            seed=config.seed,
            initial_epoch=initial_epoch,
            shard_index=shard_index,
            shard_count=shard_count,
            **pipeline,
        )
    else:
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
    if streaming:
        val_data = ds.pipeline("val", recipe.batch_size, **pipeline)
        test_data = ds.pipeline("test", recipe.batch_size, **pipeline)
    else:
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
    loss = config_loss(config)
    check_loss(loss, config.loss)
    trainer.compile(
        optimizer=recipe.optimizer(len(train_data)),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        jit_compile=config.jit,
    )
    rank = parallel.rank()
    if resuming:
        run_folder.load_state(trainer, state_path, rank)
    if start_step:
        # RestoreEpochState needs the metrics' variables in `on_epoch_begin`.
        _keras_compat.build_metrics(trainer, parallel.shard(train_data)[0])

    if resuming and chief:
        run_folder.truncate_log(run_dir / "log.csv", initial_epoch)
    if chief:
        run_folder.write_json(
            run_dir / "config.json", {**describe(config, recipe, ds), "ran": ran(trainer)}
        )
    timer = EpochTimer(len(y_train))
    writers = (
        [
            keras.callbacks.CSVLogger(str(run_dir / "log.csv"), append=resuming),
            BestWeights(run_dir / "best.weights.h5", resume=resuming, weights_of=model),
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
        start=(initial_epoch, start_step),
        write=chief,
    )
    callbacks = [
        parallel.AverageReplicas(),
        data_lib.EpochSync(train_data),
        RestoreEpochState(state_path, initial_epoch, rank) if start_step else None,
        StopOnNaN(),
        *writers,
        checkpoint,
        timer,
        *callbacks,
    ]
    fit = dict(
        validation_data=parallel.shard(val_data, training=False) if len(ds.y_val) else None,
        # The pipeline shuffles, seeded by epoch; Keras' own batch
        # shuffle would draw from Python's global random state.
        shuffle=False,
        callbacks=[c for c in callbacks if c is not None],
        verbose=config.verbose if chief else 0,
    )
    batches = parallel.shard(train_data)
    if start_step and initial_epoch < recipe.epochs:
        # Resumed inside an epoch: its remaining steps alone, then the rest.
        data = data_lib.EpochRemainder(batches, start_step)
        trainer.fit(data, epochs=initial_epoch + 1, initial_epoch=initial_epoch, **fit)
        initial_epoch += 1
    if initial_epoch < recipe.epochs and not getattr(trainer, "stop_training", False):
        trainer.fit(batches, epochs=recipe.epochs, initial_epoch=initial_epoch, **fit)
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
        "label_smoothing": config.label_smoothing,
        "loss_options": config.loss_options,
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
        "ran": ran(trainer),
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
