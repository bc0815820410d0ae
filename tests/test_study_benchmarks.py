"""`keras-crl study --benchmark`: the paper's seven benchmarks as presets.

The list and the presets' checks do not depend on the backend (once per
suite); one tiny study of a miniature CUB-200-2011 tree runs end to end on
the suite's backend.
"""

import json
import re

import pytest

from keras_crl import cli
from keras_crl.cli.flags import build_parser
from keras_crl.cli.flags import given_flags
from keras_crl.cli.to_config import config_from_args
from keras_crl.config import TrainConfig
from keras_crl.config import check_config
from keras_crl.study.benchmarks import BENCHMARKS
from keras_crl.study.benchmarks import get_benchmark
from keras_crl.study.benchmarks import preset_flags
from tests.test_benchmark_loaders import cub  # noqa: F401 (a fixture)

TITLES = ("CIFAR-10", "CIFAR-100", "SVHN", "ImageNet", "CUB-200-2011", "Stanford Cars", "Adience")


def study_config(argv):
    """The `TrainConfig` that `keras-crl study ARGV` trains, as `run_study` builds it."""
    parser = build_parser()
    argv = ["study", *argv]
    args = parser.parse_args(argv)
    preset = get_benchmark(args.benchmark)
    for dest, value in preset_flags(preset, given_flags(parser, "study", argv)).items():
        setattr(args, dest, value)
    return config_from_args(args, run_dir=""), preset


@pytest.mark.once_per_suite
def test_list_names_the_seven_benchmarks_with_estimates_and_the_published_number(capsys):
    assert cli.main(["study", "--benchmark", "list"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:9]}
    assert list(rows) == list(BENCHMARKS)
    for title in TITLES:
        assert title in out, title
    assert "72.01 % (ResNet-34, beta 0.25)" in rows["cifar100"]
    assert "72.01" not in out.replace(rows["cifar100"], "")
    assert "resnet34" in rows["cifar100"] and "paper, 300 ep" in rows["cifar100"]
    assert "finegrained" in rows["cub200"] and "448" in rows["cub200"]
    # CIFAR: 50,000 images x 300 epochs / 5,000 images per second = 50 min.
    assert "~50 min" in rows["cifar10"]
    assert "ESTIMATE, not measured" in out and "5,000 img/s" in out


@pytest.mark.once_per_suite
def test_an_unknown_benchmark_is_one_line_naming_the_valid_ones(capsys):
    assert cli.main(["study", "--benchmark", "cifar1000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--benchmark cifar1000: unknown benchmark" in err
    assert all(name in err for name in BENCHMARKS), err


@pytest.mark.once_per_suite
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_preset_passes_the_checks(name):
    config, preset = study_config(["--benchmark", name])
    assert (config.dataset, config.model, config.recipe) == (
        preset.dataset,
        preset.model,
        preset.recipe,
    )
    for v in preset.variants():
        check_config(TrainConfig(**{**vars(config), **v.train_fields()}), ["jax"])
    assert [v.name for v in preset.variants()][2] == f"crl-a0-b{preset.beta:g}"


@pytest.mark.once_per_suite
def test_flags_given_override_the_preset():
    config, _ = study_config(["--benchmark", "cub200", "--epochs", "2", "--batch-size", "4"])
    assert (config.epochs, config.batch_size) == (2, 4)
    assert (config.dataset, config.recipe) == ("cub200_stream", "finegrained")
    assert config.dataset_options == {"image_size": (448, 448)}
    assert config.model_options == {"weights": "imagenet"}
    # The preset's ImageNet weights go with its model.
    config, _ = study_config(["--benchmark", "cub200", "--model", "small_cnn"])
    assert config.model == "small_cnn" and config.model_options == {}
    config, _ = study_config(["--benchmark", "cifar100", "--image-size", "40"])
    assert config.dataset_options == {"image_size": (40, 40)} and config.epochs == 300


@pytest.mark.once_per_suite
def test_flags_given_with_a_benchmark_are_still_checked(tmp_path, capsys):
    argv = ["study", "--benchmark", "cub200", "--epochs", "0", "--out-dir", str(tmp_path / "s")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert re.search(r"--epochs 0: must be an integer of at least 1", err), err
    assert not (tmp_path / "s").exists()


@pytest.mark.once_per_suite
def test_a_benchmark_study_runs_end_to_end_on_a_miniature_tree(cub, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "study"
    argv = ["study", "--benchmark", "cub200", "--data-dir", str(cub), "--model", "small_cnn"]
    argv += ["--image-size", "16", "--epochs", "1", "--batch-size", "4", "--seeds", "1"]
    assert cli.main([*argv, "--out-dir", str(out)]) == 0, capsys.readouterr().err
    settings = json.loads((out / "study.json").read_text())
    training = settings["training"]
    assert (training["dataset"], training["recipe"]) == ("cub200_stream", "finegrained")
    assert (training["epochs"], training["model"]) == (1, "small_cnn")
    assert [v["loss"] for v in settings["variants"]] == ["ce", "nllr", "crl"]
    assert settings["variants"][2]["beta"] == 0.25
    assert settings["benchmark"] == "cub200"
    assert "--benchmark cub200" in settings["command"]
    assert "--backbone-lr-scale" not in settings["command"]  # the recipe's 0.1
    (run,) = out.glob("runs/*/crl-a0-b0.25/seed0")
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["recipe"] == "finegrained"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_images"] == 6  # the tree's official test half
    assert (out / "report.md").exists()
