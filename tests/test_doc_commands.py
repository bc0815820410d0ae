"""Every `keras-crl` command the documentation shows, through the real entry point.

The commands are found, not listed: each line of a fenced code block in
README.md, CONTRIBUTING.md and docs/ that starts with `keras-crl`, and each
example in `keras-crl --help`. A new example is covered without editing this
file. Each goes through `cli.main` up to the work itself (parsing, the
config, every check, `--resume`'s reading of the run folder), where the
training function records it instead; a named few run for real with tiny
settings. None may end in a traceback.
"""

import re
import shlex
from pathlib import Path

import pytest

from keras_crl import cli
from keras_crl.cli import flags

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [
    "README.md",
    "CONTRIBUTING.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")),
]

# Documented with a placeholder the reader replaces; each must fail its check
# with one line naming the placeholder, never a traceback.
PLACEHOLDERS = {
    "keras-crl study --extra mypkg.losses:PolyLoss:epsilon=1": "Cannot import the loss",
}
# Run for real, with these flags added to keep them tiny.
RUN = {
    "keras-crl": ["--epochs", "1", "--limit", "64"],
    "keras-crl train --list": [],
}


def _fenced_lines(text):
    inside = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            yield line


def documented_commands():
    """`{command: where}` for every `keras-crl` command in the docs and `--help`."""
    sources = {name: _fenced_lines((ROOT / name).read_text()) for name in DOCUMENTS}
    sources["keras-crl --help"] = flags.EXAMPLES.splitlines()
    found = {}
    for where, lines in sources.items():
        pending = ""
        for line in lines:
            line = pending + line.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if not re.match(r"keras-crl( |$)", line):
                continue
            # A comment: after " #" in the docs, after two spaces in --help.
            line = re.split(r"\s{2,}" if where == "keras-crl --help" else r"\s#", line)[0]
            words = shlex.split(line)
            # "..." stands for more flags.
            words = [w for w in words if w != "..."]
            found.setdefault(" ".join(words), where)
    return found


COMMANDS = documented_commands()


class Reached(Exception):
    """The command got past every check to its work."""


@pytest.fixture
def checks_only(monkeypatch):
    """`cli.main` up to the work: what would train raises `Reached` instead."""
    import keras

    from keras_crl import compare
    from keras_crl import parallel
    from keras_crl import study
    from keras_crl import train
    from keras_crl.config import check_config
    from keras_crl.study import ray_executor

    chosen = {}

    def use_backend(backend, argv):
        # This process keeps its backend; the checks take the chosen one.
        chosen["backend"] = backend or keras.backend.backend()

    def train_reached(config, callbacks=()):
        check_config(config, [chosen["backend"]])
        raise Reached(config)

    def compare_reached(config, out_dir, backends, echo=print):
        check_config(config, backends)
        raise Reached(config)

    def study_reached(settings, out_dir, current_backend):
        raise Reached(settings)

    def ray_reached(settings, out_dir, **options):
        raise Reached(settings)

    monkeypatch.setattr(cli, "_use_backend", use_backend)
    monkeypatch.setattr(parallel, "join", lambda cluster: None)
    monkeypatch.setattr(train, "train", train_reached)
    monkeypatch.setattr(compare, "compare_backends", compare_reached)
    monkeypatch.setattr(study, "run", study_reached)
    monkeypatch.setattr(ray_executor, "run", ray_reached)


def test_the_docs_show_commands():
    # The finder must find them: a change of format that hid them all would
    # otherwise pass every test below.
    assert len(COMMANDS) >= 20, COMMANDS
    assert "keras-crl train --list" in COMMANDS
    assert any(where == "keras-crl --help" for where in COMMANDS.values())
    assert any(c.startswith("keras-crl study --dataset cifar100") for c in COMMANDS)
    assert set(PLACEHOLDERS) | set(RUN) <= set(COMMANDS)


@pytest.mark.once_per_suite
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_documented_command_passes_its_checks(command, checks_only, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # run folders, if any, land here
    argv = shlex.split(command)[1:]
    try:
        status = cli.main(argv)
    except Reached:
        status = "reached"
    except SystemExit as exit:  # argparse: --help, or a flag it does not know
        status = exit.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    if command in PLACEHOLDERS:
        assert status == 2, (command, status, err)
        assert len(err.strip().splitlines()) == 1 and PLACEHOLDERS[command] in err, err
    elif command.endswith("--help"):
        assert status == 0
    else:
        notices = [line for line in err.splitlines() if line.strip()]
        assert all("--resume" in line for line in notices), err
        assert status in ("reached", 0), f"{command} ({COMMANDS[command]}): {err}"


@pytest.mark.once_per_suite
@pytest.mark.parametrize("command", sorted(RUN))
def test_named_commands_run(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main([*shlex.split(command)[1:], *RUN[command]]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if command == "keras-crl":
        assert "crl" in out and (tmp_path / "runs/demo/crl/metrics.json").exists()
    else:
        assert "small_cnn" in out and "digits" in out
