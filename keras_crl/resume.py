"""What `--resume` may change: the configuration that continues a run folder.

A run folder holds one configuration. Resuming compares the `TrainConfig`
asked for with the one in the folder's `config.json`: how the run runs may
change (`RESUMABLE_CHANGES`), what it trains may not, and more epochs keep
the step schedule's milestones where the finished epochs had them.
"""

import dataclasses
import json

from keras_crl.config import _DEFAULTS
from keras_crl.config import ConfigError
from keras_crl.config import TrainConfig
from keras_crl.config import loss_parameters

__all__ = ["RESUMABLE_CHANGES", "resumed_config"]

# What a resumed run may change: how it runs, not what it trains. Everything
# else in `TrainConfig` (and the resolved recipe) must equal the checkpoint's.
RESUMABLE_CHANGES = (
    "epochs",
    "run_dir",
    "resume",
    "jit",
    "deterministic",
    "data_format",
    "data_dir",
    "init_weights",
    "checkpoint_steps",
    "checkpoint_seconds",
    "keep_checkpoints",
    "verbose",
)


def resumed_config(trained, requested, trained_epochs):
    """The configuration that continues a run folder's training, and what it changes.

    Args:
        trained: The run folder's `config.json` (`train.describe`): the
            `config` it was trained with, its resolved `recipe` and the
            `milestones_used`.
        requested: The `TrainConfig` asked for.
        trained_epochs: The epochs the checkpoint has finished.

    Returns:
        `(config, changes)`: the `TrainConfig` to train with, and
        `{field: [trained value, requested value]}` for each field that
        differs and may (`RESUMABLE_CHANGES`). More or fewer `epochs` keep
        the step schedule's milestones where the run had them.

    Raises:
        ValueError: Fields that change what is trained (the loss and its
            parameters, model, data, batch, recipe, learning rate, seed,
            precision, devices) differ, each named with both values; or
            `epochs` changes a cosine schedule (it anneals over the whole
            run, epochs already trained included) or falls below the epochs
            already trained.
    """
    old = _comparable(trained["config"], trained["recipe"])
    new = _comparable(
        dataclasses.asdict(requested), dataclasses.asdict(requested.resolved_recipe())
    )
    changes = {
        k: [old.get(k), new.get(k)]
        for k in sorted(old.keys() | new.keys())
        if old.get(k) != new.get(k)
    }
    refused = [k for k in changes if k not in RESUMABLE_CHANGES]
    if refused:
        shown = "; ".join(
            f"{k} {changes[k][0]!r} in the run, {changes[k][1]!r} asked" for k in refused
        )
        raise ValueError(
            f"{requested.run_dir} was trained with other settings ({shown}). Resume it with "
            "the run's settings, or train into a new run folder."
        )
    if "epochs" in changes:
        requested = _more_epochs(trained, requested, trained_epochs)
    return requested, changes


def _more_epochs(trained, requested, trained_epochs):
    epochs = requested.resolved_recipe().epochs
    if epochs < trained_epochs:
        raise ConfigError("epochs", epochs, f"the run has already trained {trained_epochs} epochs")
    schedule = trained["recipe"]["schedule"]
    if schedule == "cosine":
        raise ConfigError(
            "epochs",
            epochs,
            f"the run's cosine schedule anneals over its {trained['recipe']['epochs']} epochs; "
            "other epochs would change the rate of the epochs it has trained",
        )
    if schedule == "step":
        # The milestones the trained epochs used, not rescaled to the new length.
        milestones = tuple(trained["milestones_used"])
        return dataclasses.replace(requested, milestones=milestones, reference_epochs=epochs)
    return requested


# The fields that are recipe overrides: compared as the recipe they resolve to.
_RECIPE_OVERRIDES = (
    "recipe",
    "epochs",
    "batch_size",
    "learning_rate",
    "momentum",
    "weight_decay",
    "schedule",
    "milestones",
    "reference_epochs",
    "augment",
)


def _comparable(config, recipe):
    """A configuration's fields and its resolved recipe's, as JSON holds them."""
    fields = {k: v for k, v in config.items() if k in _DEFAULTS and k not in _RECIPE_OVERRIDES}
    # Whether a run resumes, and how much it prints, are not settings of it.
    del fields["resume"], fields["verbose"]
    fields["alpha"], fields["beta"] = loss_parameters(TrainConfig(**fields))
    options = fields.get("dataset_options", {})
    # Decoding threads change how fast a stream is read, not what is read.
    fields["dataset_options"] = {k: v for k, v in options.items() if k != "workers"}
    fields.update(
        (f"recipe.{k}", v) for k, v in recipe.items() if k not in ("milestones", "reference_epochs")
    )
    fields["epochs"] = fields.pop("recipe.epochs")
    return json.loads(json.dumps(fields))
