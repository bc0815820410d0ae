"""The `keras-crl` command: flags in, `TrainConfig` / `StudySettings` out.

    keras-crl                      the main job: CRL vs cross-entropy on the
                                   bundled digits data, about a minute on a CPU
    keras-crl train [options]      one training run into a run folder
    keras-crl compare-backends     the same training on TensorFlow, PyTorch
                                   and JAX, compared
    keras-crl study [options]      CE vs NLLR vs CRL over seeds and backends:
                                   a report with paired comparisons

This package is the only one that knows about argparse (`flags`); what each
command does is in `commands`. `--backend` chooses the Keras backend before
Keras is first imported, so no other backend is loaded; if Keras was already
loaded with another backend, the command restarts itself with
`KERAS_BACKEND` set. Every setting is checked (`keras_crl.config`) before any
work starts. A user's mistake (a value out of range, a flag that does not
apply, an unknown name, a missing data set, a corrupt file) ends the command
with one line on stderr, naming the flag, and exit status 2; set
`KERAS_CRL_TRACEBACK=1` to see the traceback instead. Ctrl-C ends it with
one line saying how to go on, and exit status 130.
"""

import os
import sys

from keras_crl.cli.flags import CHECKPOINT_EVERY
from keras_crl.cli.flags import build_parser
from keras_crl.cli.flags import flag_of
from keras_crl.cli.flags import parse_every
from keras_crl.cli.to_config import config_from_args

__all__ = ["CHECKPOINT_EVERY", "build_parser", "config_from_args", "main", "parse_every"]


def main(argv=None):
    """Runs `keras-crl ARGV`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["demo", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        argv = ["demo"]
        args = parser.parse_args(argv)
    try:
        _use_backend(getattr(args, "backend", None), argv)
        from keras_crl.cli.commands import COMMANDS

        return COMMANDS[args.command](parser, args, argv)
    except _user_errors() as error:
        if os.environ.get("KERAS_CRL_TRACEBACK"):
            raise
        print(f"keras-crl {args.command}: error: {_in_flags(parser, args, error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, not a crash: one line saying how to go on.
        print(
            f"keras-crl {args.command}: interrupted{_GO_ON.get(args.command, '')}", file=sys.stderr
        )
        return 130


_GO_ON = {
    "train": "; the same command with --resume continues from the last checkpoint",
    "study": "; the same command again trains only the runs not finished",
}


def _user_errors():
    from keras_crl.config import USER_ERRORS

    return USER_ERRORS


def _in_flags(parser, args, error):
    """A `ConfigError` told in the command line's words: `--epochs -1: ...`."""
    from keras_crl.config import ConfigError

    if not isinstance(error, ConfigError):
        return error
    flag = flag_of(parser, args.command, error.field)
    value = error.value[0] if error.field == "image_size" and error.value else error.value
    if error.field == "jit":
        value = {True: "on", False: "off"}.get(value, value)
    if error.field == "data_format":  # --channels-first takes no value
        value = None
    if not flag.startswith("--"):
        return error
    if isinstance(value, bool) or value is None:
        return f"{flag}: {error.reason}"
    return f"{flag} {value}: {error.reason}"


def _use_backend(backend, argv):
    """Makes `backend` Keras' backend, loading no other.

    Before Keras is imported, `KERAS_BACKEND` decides; after, a process
    whose Keras runs another backend restarts itself.
    """
    if not backend:
        return
    from keras_crl.backends import installed_backends

    if backend not in installed_backends():
        raise ValueError(
            f"--backend {backend}: {backend} is not installed. Installed: "
            f"{', '.join(installed_backends())}. (pip install 'keras-crl[{backend}]')"
        )
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
        return
    import keras

    if keras.backend.backend() != backend:
        from keras_crl.backends import backend_env

        env = backend_env(backend)
        os.execve(sys.executable, [sys.executable, "-m", "keras_crl.cli", *argv], env)
