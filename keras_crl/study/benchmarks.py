"""The paper's seven benchmarks as study presets: `keras-crl study --benchmark NAME`.

Each `Benchmark` holds the flags a study of that benchmark starts from (data
set, model, recipe, image size, ...) and CRL's beta; a flag given on the
command line wins over the preset's value. The GPU time is an estimate, not a
measurement: training images x epochs / an assumed throughput
(`ASSUMED_THROUGHPUT`), evaluation left out.
"""

import dataclasses

from keras_crl.study.variants import variant

# Training images per second assumed on one current data-centre GPU (an
# A100 / H100 class card), by model and image side. Not measured here: only
# the basis of the estimates `--benchmark list` prints.
ASSUMED_THROUGHPUT = {
    ("resnet34", 32): 5000,
    ("keras_app_resnet50", 224): 1000,
    ("keras_app_resnet50", 448): 250,
}


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One paper benchmark's preset.

    Args:
        name: What `--benchmark` takes.
        title: The benchmark's usual name.
        dataset, model, recipe, image_size, epochs, batch_size, weights:
            The flags of the same names; `None` leaves the flag's (or the
            recipe's) default.
        beta: CRL's beta (alpha is the authors' 0).
        train_images: Images of the official training part (the basis of
            the time estimate).
        source: Where to get the data and what `--data-dir` holds.
        published: The authors' published CRL number, or `""`.
    """

    name: str
    title: str
    dataset: str
    model: str
    recipe: str
    epochs: int
    train_images: int
    source: str
    beta: float = 0.25
    image_size: int | None = None
    batch_size: int | None = None
    weights: str | None = None
    published: str = ""

    def flags(self):
        """The preset as argparse destinations (`None`: not set by the preset)."""
        values = {
            "dataset": self.dataset,
            "model": self.model,
            "recipe": self.recipe,
            "epochs": self.epochs,
            "image_size": self.image_size,
            "batch_size": self.batch_size,
            "weights": self.weights,
        }
        return {k: v for k, v in values.items() if v is not None}

    def estimated_seconds(self):
        """GPU seconds per run: images x epochs / `ASSUMED_THROUGHPUT`."""
        side = self.image_size or 32
        return self.train_images * self.epochs / ASSUMED_THROUGHPUT[(self.model, side)]

    def variants(self):
        """The losses it trains: CE, NLLR and CRL at this beta."""
        return [variant("ce"), variant("nllr"), variant("crl", 0.0, self.beta)]


_CIFAR = "the study downloads it into --data-dir (or reads a copy there)"
_FINE = dict(model="keras_app_resnet50", recipe="finegrained", image_size=448, weights="imagenet")
BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark(
            "cifar10",
            "CIFAR-10",
            "cifar10",
            "resnet34",
            "paper",
            300,
            50000,
            _CIFAR,
        ),
        Benchmark(
            "cifar100",
            "CIFAR-100",
            "cifar100",
            "resnet34",
            "paper",
            300,
            50000,
            _CIFAR,
            published="72.01 % (ResNet-34, beta 0.25)",
        ),
        Benchmark(
            "svhn",
            "SVHN",
            "svhn",
            "resnet34",
            "paper",
            300,
            73257,
            "train_32x32.mat and test_32x32.mat (ufldl.stanford.edu/housenumbers), downloaded",
        ),
        Benchmark(
            "imagenet",
            "ImageNet (ILSVRC2012)",
            "imagenet",
            "keras_app_resnet50",
            "imagenet",
            90,
            1281167,
            "image-net.org: train/ synset folders, flat val/ and LOC_val_solution.csv "
            "or the devkit's ground truth",
            image_size=224,
        ),
        Benchmark(
            "cub200",
            "CUB-200-2011",
            "cub200_stream",
            epochs=60,
            train_images=5994,
            source="data.caltech.edu (CUB_200_2011.tgz): the CUB_200_2011/ folder",
            **_FINE,
        ),
        Benchmark(
            "stanford_cars",
            "Stanford Cars",
            "stanford_cars_stream",
            epochs=60,
            train_images=8144,
            source="cars_train/, cars_test/, devkit/ and cars_test_annos_withlabels.mat",
            **_FINE,
        ),
        Benchmark(
            "adience",
            "Adience (age, fold 0)",
            "adience",
            "keras_app_resnet50",
            "finegrained",
            60,
            # About four fifths of the roughly 17,000 faces with an age group.
            13700,
            "talhassner.github.io/home/projects/Adience: aligned/ and fold_0_data.txt .. "
            "fold_4_data.txt",
            image_size=224,
            weights="imagenet",
        ),
    )
}


def get_benchmark(name):
    """The `Benchmark` called `name`.

    Raises:
        ValueError: An unknown name; the message lists the valid ones.
    """
    if name not in BENCHMARKS:
        raise ValueError(
            f"--benchmark {name}: unknown benchmark. Valid: list, {', '.join(BENCHMARKS)}"
        )
    return BENCHMARKS[name]


def preset_flags(benchmark, given):
    """The preset's flags that the command line did not give itself.

    The preset's `weights` belong to its model: with `--model` given they
    are left out (give `--weights` with it if the new model takes them).

    Args:
        benchmark: A `Benchmark`.
        given: The argparse destinations the command line set
            (`cli.flags.given_flags`).

    Returns:
        A dict of argparse destinations to set.

    Example:

    >>> preset_flags(get_benchmark("cifar100"), {"epochs"})["model"]
    'resnet34'
    """
    flags = benchmark.flags()
    if "model" in given:
        flags.pop("weights", None)
    return {k: v for k, v in flags.items() if k not in given}


def _hours(seconds):
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def benchmark_table():
    """`--benchmark list`: the seven benchmarks, one line each, and the estimate's basis."""
    header = (
        "name",
        "benchmark",
        "model",
        "recipe",
        "size",
        "beta",
        "est. GPU time/run",
        "published CRL",
    )
    rows = [header]
    for b in BENCHMARKS.values():
        rows.append(
            (
                b.name,
                b.title,
                b.model + (" (ImageNet weights)" if b.weights == "imagenet" else ""),
                f"{b.recipe}, {b.epochs} ep",
                str(b.image_size or 32),
                f"{b.beta:g}",
                "~" + _hours(b.estimated_seconds()),
                b.published or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    basis = ", ".join(
        f"{model} at {side} px {rate:,} img/s" for (model, side), rate in ASSUMED_THROUGHPUT.items()
    )
    lines += [
        "",
        "GPU time is an ESTIMATE, not measured: official training images x epochs / an assumed "
        f"throughput on one A100/H100-class GPU ({basis}); evaluation not counted. A study "
        "trains 3 losses x --seeds runs.",
        "Published: the authors' number, where we have one. "
        "Run one: keras-crl study --benchmark NAME --data-dir DIR",
    ]
    return "\n".join(lines)


__all__ = [
    "ASSUMED_THROUGHPUT",
    "BENCHMARKS",
    "Benchmark",
    "benchmark_table",
    "get_benchmark",
    "preset_flags",
]
