"""`TrainConfig`, everything that defines a training run, and its checks.

A configuration is checked here and nowhere else, so `train()`, `keras-crl
train`, `compare-backends` and `study` refuse the same mistakes in the same
words, before any data is read or any folder is made. What a resumed run may
change is `keras_crl.resume`'s.
"""

import dataclasses
import math
import os

from keras_crl import data as data_lib
from keras_crl import models as models_lib
from keras_crl._optional import MissingOptionalDependency
from keras_crl.data.adience import NUM_FOLDS as ADIENCE_FOLDS
from keras_crl.loss_factory import LOSSES
from keras_crl.loss_factory import make_loss
from keras_crl.recipes import get_recipe

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DATA_FORMATS = ("channels_last", "channels_first")
SCHEDULES = ("step", "cosine", "constant")
# The CRL family's members other than CRL itself: CRL at fixed (alpha, beta).
FIXED_ALPHA_BETA = {"ce": (0.0, 0.0), "nllr": (0.0, 1.0)}
# The authors' release, CRL's defaults.
CRL_ALPHA, CRL_BETA = 0.0, 0.25
# The data sets published as cross-validation folds, and how many: fold k is
# the test split, the others train (`keras_crl.folds` trains them all).
DATASET_FOLDS = {"adience": ADIENCE_FOLDS}
# A user's mistakes: names and values, corrupt or mismatched files (the
# loaders name the file), missing data, a loss that became NaN, an optional
# package not installed (the message names the extra). The command line and
# the worker processes report these as one line, not a traceback.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    data_lib.DatasetNotAvailable,
    FloatingPointError,
    MissingOptionalDependency,
)

__all__ = [
    "DATASET_FOLDS",
    "USER_ERRORS",
    "ConfigError",
    "TrainConfig",
    "check_config",
    "check_jit",
    "config_loss",
    "loss_parameters",
]


class ConfigError(ValueError):
    """A `TrainConfig` field (or data set option) holds a value it cannot take.

    Args:
        field: The field's name, e.g. `"epochs"` or `"image_size"`.
        value: The value given.
        reason: What is wrong, e.g. `"must be an integer of at least 1"`.
    """

    def __init__(self, field, value, reason):
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"{field}={value!r}: {reason}")


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run.

    Args:
        model: A name from `keras_crl.models.list_models()`.
        dataset: A name from `keras_crl.data.list_datasets()`.
        loss: `"crl"`, `"nllr"`, `"ce"`, `"focal"` or a user loss
            `"package.module:Class"` (see `keras_crl.loss_factory.make_loss`).
        alpha: CRL's alpha; `None` is the authors' 0. NLLR and CE are CRL at
            a fixed alpha and beta (0 and 1; 0 and 0): they take no other
            value, and other losses take none.
        beta: CRL's beta; `None` is the authors' 0.25.
        label_smoothing: Label smoothing of the built-in losses.
        loss_options: Keyword arguments of `"focal"` (`gamma`) or of the
            user loss.
        recipe: A recipe of `keras_crl.recipes.RECIPES` (`"paper"`,
            `"cosine"`, `"imagenet"`, `"finegrained"`); the fields below
            override it.
        epochs, batch_size, learning_rate, momentum, weight_decay, schedule,
        milestones, reference_epochs, augment, backbone_lr_scale: Recipe
            overrides (`None` keeps the recipe's). `milestones` are given
            for a run of `reference_epochs` epochs and scaled to `epochs`.
        seed: Seed of the initial weights, the data order and augmentation.
        validation_split: Fraction of the training data held out for model
            selection.
        data_dir: Where data sets are looked for / downloaded.
        dataset_options: Extra arguments of the data set loader (e.g.
            `image_size` for `"folder"`).
        model_options: Extra arguments of the model builder (e.g.
            `weights="imagenet"`, `freeze_backbone=True` for `keras_app_*`).
        limit: Use only the first `limit` training images (quick runs).
        init_weights: A `.weights.h5` file to start from instead of the
            seeded NumPy initialization.
        run_dir: The run folder.
        jit: Compile the train step (`jit_compile`): `True` is XLA on
            TensorFlow and JAX; `"auto"` lets Keras choose (XLA on JAX, and on
            TensorFlow with a GPU unless `deterministic`; a graph without XLA
            on a TensorFlow CPU; eager torch); `False` never compiles with
            XLA. `True` is refused (`check_jit`) on TensorFlow when
            `deterministic` (Keras runs no XLA under TensorFlow's op
            determinism) and on torch (torch.compile breaks Keras' step into
            many graphs and recompiles it layer by layer; measured in
            `benchmarks/jit.py`). What ran is in `config.json` and
            `metrics.json` under `"ran"`.
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
            after the checkpoint (inside an epoch too); without a checkpoint
            the run starts fresh. The configuration must train what the
            checkpoint trained (`resumed_config`).
        checkpoint_steps: Also checkpoint inside epochs every this many steps.
        checkpoint_seconds: Also checkpoint inside epochs every this many
            seconds of training (default 600; None: only at epoch ends).
        keep_checkpoints: Checkpoints to keep: `state.npz` and the newest
            older ones beside it (`state-EEEE-SSSSSS.npz`).
        verbose: Keras' progress bar (1), one line per epoch (2), or none.

    Example:

    >>> config = TrainConfig(loss="nllr", epochs=2)
    >>> check_config(config)
    >>> loss_parameters(config)
    (0.0, 1.0)
    """

    model: str = "small_cnn"
    dataset: str = "digits"
    loss: str = "crl"
    alpha: float | None = None
    beta: float | None = None
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
    reference_epochs: int | None = None
    augment: bool | None = None
    backbone_lr_scale: float | None = None
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
        """The `keras_crl.recipes.Recipe` with this configuration's overrides."""
        return get_recipe(
            self.recipe,
            epochs=self.epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            milestones=self.milestones,
            reference_epochs=self.reference_epochs,
            augment=self.augment,
            backbone_lr_scale=self.backbone_lr_scale,
        )


def _whole(minimum):
    def check(value):
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    return check, f"must be an integer of at least {minimum}"


def _number(low, high=math.inf, low_open=False, high_open=True):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        return math.isfinite(value) and above and below

    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return check, f"must be a number in {left}{low:g}, {high:g}{right}"


# Each numeric field: its check and the reason given when it fails. A field
# whose default is None may also be None (the recipe's value, or off), and so
# may those in _MAY_BE_OFF.
_NUMBERS = {
    "epochs": _whole(1),
    "batch_size": _whole(1),
    "limit": _whole(1),
    "reference_epochs": _whole(1),
    "seed": _whole(0),
    "devices": _whole(1),
    "checkpoint_steps": _whole(1),
    "keep_checkpoints": _whole(1),
    "verbose": _whole(0),
    "learning_rate": _number(0),  # 0 is a frozen run: the DDP tests use it
    "momentum": _number(0, 1),
    "weight_decay": _number(0),
    "backbone_lr_scale": _number(0),
    "validation_split": _number(0, 1),
    "label_smoothing": _number(0, 1),
    "checkpoint_seconds": _number(0, low_open=True),
}
# None means "off" here, although the default is a number.
_MAY_BE_OFF = ("checkpoint_seconds",)
_CHOICES = {
    "precision": PRECISIONS,
    "data_format": DATA_FORMATS,
    "schedule": SCHEDULES,
    "jit": ("auto", True, False),
    "deterministic": (True, False),
}
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def loss_parameters(config):
    """The alpha and beta the configured loss trains with.

    Returns:
        `(alpha, beta)`: CRL's (the authors' 0 and 0.25 where unset), NLLR's
        `(0, 1)`, CE's `(0, 0)`; `(None, None)` for focal and user losses.
    """
    if config.loss == "crl":
        alpha = CRL_ALPHA if config.alpha is None else float(config.alpha)
        return alpha, CRL_BETA if config.beta is None else float(config.beta)
    return FIXED_ALPHA_BETA.get(config.loss, (None, None))


def config_loss(config):
    """The loss `config` trains with (`keras_crl.loss_factory.make_loss`)."""
    alpha, beta = loss_parameters(config)
    return make_loss(
        config.loss,
        alpha=alpha or 0.0,
        beta=CRL_BETA if beta is None else beta,
        label_smoothing=config.label_smoothing,
        options=config.loss_options,
    )


def check_config(config, backends=None, folds=None):
    """Checks every field of `config`, before any data is read.

    Args:
        config: A `TrainConfig`.
        backends: The backends it will train on (default: the current one),
            for what depends on the backend (`check_jit`).
        folds: `"all"`: `config` is trained once per fold of its data set
            (`keras_crl.folds`), which must have folds (`DATASET_FOLDS`).

    Raises:
        ConfigError: A field holds a value it cannot take: a number out of
            range, an unknown name, alpha or beta set for a loss that does
            not take them, a data set option its loader does not take. The
            message names the field and the value.
        ValueError: A loss that cannot be built from its name and options.
    """
    _check_numbers(config)
    _check_names(config)
    _check_loss_parameters(config)
    _check_dataset_options(config)
    _check_folds(config, folds)
    _check_model_options(config)
    for backend in backends or [None]:
        check_jit(config.jit, config.deterministic, backend)
    _check_data_format(config, backends)
    # Built, not called: a call makes tensors, and TensorFlow can no longer
    # split its CPU for `devices` once it has (`train` calls it).
    config_loss(config)


def check_jit(jit, deterministic, backend=None):
    """Refuses a `jit=True` that would not run a compiled step on `backend`.

    Args:
        jit: `TrainConfig.jit`.
        deterministic: `TrainConfig.deterministic`.
        backend: `"tensorflow"`, `"jax"` or `"torch"`; default: Keras' own.

    Raises:
        ConfigError: `jit=True` on TensorFlow with deterministic kernels, or
            on torch.

    Example:

    >>> check_jit(True, deterministic=False, backend="tensorflow")
    >>> check_jit(True, deterministic=True, backend="tensorflow")
    Traceback (most recent call last):
    ...
    keras_crl.config.ConfigError: jit=True: needs deterministic=False (--no-deterministic) ...
    """
    if jit is not True:
        return
    if backend is None:
        import keras

        backend = keras.backend.backend()
    if backend == "tensorflow" and deterministic:
        raise ConfigError(
            "jit",
            True,
            "needs deterministic=False (--no-deterministic) on TensorFlow: under its op "
            "determinism Keras runs the step without XLA",
        )
    if backend == "torch":
        raise ConfigError(
            "jit",
            True,
            "is refused on torch: torch.compile splits Keras' train step at loss.backward() "
            "and in BatchNormalization and recompiles it layer by layer (a first step of a "
            "minute, then mostly eager); use --jit off or auto",
        )


def _check_data_format(config, backends):
    """Refuses channels-first where this process's TensorFlow cannot run it."""
    if config.data_format != "channels_first" or backends not in (None, [], ["tensorflow"]):
        return
    import keras

    from keras_crl.backends import takes_channels_first

    if keras.backend.backend() == "tensorflow" and not takes_channels_first():
        raise ConfigError(
            "data_format",
            "channels_first",
            "TensorFlow's CPU kernels here take channels-last images only (channels-first "
            "needs a GPU, or oneDNN: TF_ENABLE_ONEDNN_OPTS=1)",
        )


def _check_numbers(config):
    for field, (check, reason) in _NUMBERS.items():
        value = getattr(config, field)
        if value is None and (_DEFAULTS[field] is None or field in _MAY_BE_OFF):
            continue
        if not check(value):
            raise ConfigError(field, value, reason)


def _check_names(config):
    _check_choice("model", config.model, models_lib.list_models())
    _check_choice("dataset", config.dataset, data_lib.list_datasets())
    for field, valid in _CHOICES.items():
        value = getattr(config, field)
        if value is not None or _DEFAULTS[field] is not None:
            _check_choice(field, value, valid)
    if config.loss not in LOSSES and ":" not in str(config.loss):
        raise ConfigError(
            "loss",
            config.loss,
            f"unknown loss. Valid losses: {', '.join(LOSSES)}, or a user loss as "
            "package.module:Class",
        )
    try:
        config.resolved_recipe()
    except ValueError as error:
        raise ConfigError("recipe", config.recipe, str(error)) from None


def _check_choice(field, value, valid):
    if value not in valid:
        shown = ", ".join(str(v) for v in valid)
        raise ConfigError(field, value, f"unknown {field}. Valid {field}s: {shown}")


def _check_loss_parameters(config):
    for field in ("alpha", "beta"):
        value = getattr(config, field)
        if value is None:
            continue
        if config.loss == "crl":
            if not _number(0)[0](value):
                raise ConfigError(field, value, "CRL needs a finite number of at least 0")
        elif config.loss in FIXED_ALPHA_BETA:
            alpha, beta = FIXED_ALPHA_BETA[config.loss]
            if value != {"alpha": alpha, "beta": beta}[field]:
                raise ConfigError(
                    field,
                    value,
                    f"{config.loss} is CRL with alpha {alpha:g} and beta {beta:g}; "
                    f"for another {field} use loss 'crl'",
                )
        else:
            raise ConfigError(
                field, value, f"applies to the CRL family (crl, nllr, ce), not to {config.loss}"
            )
    if ":" in config.loss and config.label_smoothing:
        raise ConfigError(
            "label_smoothing",
            config.label_smoothing,
            "a user loss takes label smoothing as its own option, if it has one "
            "(package.module:Class:label_smoothing=0.1)",
        )


def _check_model_options(config):
    if "batch_norm" in config.model_options:
        batch_norm = config.model_options["batch_norm"]
        if not isinstance(batch_norm, bool):
            raise ConfigError("batch_norm", batch_norm, "must be true or false")
        if config.model != "small_cnn":
            raise ConfigError(
                "batch_norm", batch_norm, f"applies to small_cnn only, not to {config.model}"
            )
    if "weights" not in config.model_options:
        return
    weights = config.model_options["weights"]
    if not str(config.model).startswith((models_lib.APP_PREFIX, models_lib.HUB_PREFIX)):
        raise ConfigError(
            "weights",
            weights,
            f"applies to the {models_lib.APP_PREFIX}* models (keras.applications backbones) "
            f"and the {models_lib.HUB_PREFIX}* ones, not to {config.model}; a whole model's "
            "weights file goes to --init-weights",
        )
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise ConfigError(
            "weights", weights, "no such file (give 'imagenet' or a .weights.h5 file)"
        )


def _check_folds(config, folds):
    fold = config.dataset_options.get("fold")
    if config.dataset in DATASET_FOLDS and fold is not None:
        count = DATASET_FOLDS[config.dataset]
        if isinstance(fold, bool) or fold not in range(count):
            raise ConfigError("fold", fold, f"{config.dataset} has folds 0 to {count - 1}")
    if folds is None:
        return
    if folds != "all":
        raise ConfigError("folds", folds, "must be 'all' (--fold K trains one fold)")
    if config.dataset not in DATASET_FOLDS:
        raise ConfigError(
            "folds",
            folds,
            f"applies to data sets with folds ({', '.join(DATASET_FOLDS)}), "
            f"not to {config.dataset}",
        )
    if fold is not None:
        raise ConfigError("folds", folds, f"trains every fold; --fold {fold} trains one: give one")


def _check_dataset_options(config):
    accepted = data_lib.loader_options(config.dataset)
    for option, value in config.dataset_options.items():
        if option not in accepted:
            raise ConfigError(
                option,
                value,
                f"does not apply to dataset {config.dataset} "
                f"(its options: {', '.join(sorted(accepted)) or 'none'})",
            )
    size = config.dataset_options.get("image_size")
    if size is not None:
        sizes = (size, size) if isinstance(size, int) else tuple(size)
        if len(sizes) != 2 or not all(_whole(1)[0](s) for s in sizes):
            raise ConfigError("image_size", size, "must be a positive integer or two of them")
