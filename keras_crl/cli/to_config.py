"""The `TrainConfig` the command line's flags describe, and `--resume`'s reading of
the run folder (flags -> TrainConfig; the flags themselves: `flags.py`).

Like `flags.py`, it imports neither Keras nor a backend.
"""

import dataclasses
import json
from pathlib import Path

from keras_crl.cli.flags import CHECKPOINT_EVERY
from keras_crl.cli.flags import FLAG_FIELDS
from keras_crl.cli.flags import parse_every


def _model_options(args):
    options = {} if args.weights is None else {"weights": args.weights}
    return options if args.batch_norm else {**options, "batch_norm": False}


def _loss_fields(args):
    """The `TrainConfig` fields of `--loss` and its parameters.

    `--loss focal:gamma=2`, `crl:0.5:0.5` or `package.module:Class:k=v` are
    read as the study's `--extra` reads them.
    """
    fields = {"loss": args.loss, "alpha": args.alpha, "beta": args.beta}
    if args.loss not in ("crl", "nllr", "ce"):
        from keras_crl.study.variants import parse_variant

        spec = parse_variant(args.loss).train_fields()
        for name in ("alpha", "beta"):
            given = fields[name]
            if given is not None and spec[name] is not None and given != spec[name]:
                raise ValueError(f"--{name} {given:g} and --loss {args.loss} disagree.")
            spec[name] = given if given is not None else spec[name]
        fields = spec
    fields["label_smoothing"] = fields.get("label_smoothing") or args.label_smoothing
    return fields


def _dataset_options(args):
    options = {}
    if args.image_size is not None:
        options["image_size"] = (args.image_size, args.image_size)
    if args.dataset in ("folder", "folder_stream"):
        if not args.data_dir:
            raise ValueError(
                f"--dataset {args.dataset} needs --data-dir PATH (one sub-folder per class)."
            )
        options["path"] = args.data_dir
    if args.data_workers is not None:
        options["workers"] = args.data_workers
    if args.fold is not None:
        options["fold"] = args.fold
    return options


def config_from_args(args, run_dir):
    """The `TrainConfig` the flags describe (run flags absent: defaults)."""
    from keras_crl.config import TrainConfig

    options = _dataset_options(args)
    run = {}
    if hasattr(args, "checkpoint_every"):
        run["checkpoint_steps"], run["checkpoint_seconds"] = parse_every(
            args.checkpoint_every or CHECKPOINT_EVERY
        )
        run["keep_checkpoints"] = args.keep_checkpoints
    if hasattr(args, "loss"):
        run.update(
            **_loss_fields(args),
            seed=args.seed,
            init_weights=args.init_weights,
            devices=args.devices,
            data_format="channels_first" if args.channels_first else "channels_last",
            verbose=args.verbose,
        )
    return TrainConfig(
        model=args.model,
        dataset=args.dataset,
        recipe=args.recipe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        augment=args.augment,
        backbone_lr_scale=args.backbone_lr_scale,
        validation_split=args.validation_split,
        data_dir=None if "path" in options else args.data_dir,
        dataset_options=options,
        model_options=_model_options(args),
        limit=args.limit,
        run_dir=run_dir,
        jit={"auto": "auto", "on": True, "off": False}[args.jit],
        deterministic=args.deterministic,
        precision=args.precision,
        resume=getattr(args, "resume", False),
        **run,
    )


def resume_from_run_folder(config, given, saved=None):
    """`train --resume`: the run folder's settings, with the flags given here.

    Args:
        config: The `TrainConfig` of the command line (defaults included).
        given: The flags the command line set itself (`given_flags`).
        saved: A JSON file whose `"config"` holds the settings (`folds.json`
            of `--folds all`); default the folder's `config.json`, read
            when it has a checkpoint.

    Returns:
        The run's `config.json` settings, where a flag given here replaces
        its field; how the run runs (checkpoints, verbosity, jit) always
        comes from the command line. `config` when the folder has no
        checkpoint. `train()` then refuses what changes the training.
    """
    from keras_crl.config import TrainConfig
    from keras_crl.resume import RESUMABLE_CHANGES

    folder = Path(config.run_dir)
    if saved is None:
        if not (folder / "state.npz").exists() or not (folder / "config.json").exists():
            return config
        saved = folder / "config.json"
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    trained = json.loads(Path(saved).read_text())["config"]
    fields = {k: v for k, v in trained.items() if k in known}
    own = {f for f in RESUMABLE_CHANGES if f != "epochs"}
    for dest in given:
        own.update(FLAG_FIELDS.get(dest, (dest,)))
    fields.update({k: getattr(config, k) for k in own & known})
    if "dataset_options" in own:
        fields["dataset_options"] = {**trained["dataset_options"], **config.dataset_options}
    return TrainConfig(**fields)
