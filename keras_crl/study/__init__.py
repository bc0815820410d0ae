"""Does CRL train better classifiers than cross-entropy? A repeatable study.

    keras-crl study [--quick] [--sweep] [--backends tensorflow,torch,jax]

Every (backend, loss, seed) is one `keras_crl.train.train` run into
`out_dir/runs/<backend>/<loss>/seed<k>`; the test accuracy of a run is the
one of its best-on-validation weights, on the held-out test split. A seed
fixes the initial weights, the validation split, the data order and the
augmentation, so two runs with the same seed differ only in their loss: the
comparison against cross-entropy is paired, seed by seed.

Each backend trains in its own process (`python -m keras_crl.study.runner`
with `KERAS_BACKEND` set), all of that backend's runs one after the other;
the backend the command already runs under trains in the command's own
process. The settings live in `out_dir/study.json`, the single source the
worker processes read and the guard that stops a rerun from mixing settings.

Resuming: a run whose `metrics.json` exists is skipped, a run with only a
`state.npz` continues from its last finished epoch (`train(resume=True)`),
so an interrupted study finishes by running the same command again, and more
seeds, losses or backends can be added to a finished one.

Output, next to `runs/`: `report.md` (tables and findings), `accuracy.png`,
`curves.png`, `sweep.png` (with `--sweep`), `reliability.png` (calibration per
loss) and `results.json` (every run's numbers and the aggregates).

The modules, in the order a study uses them: `benchmarks` (the paper's
benchmarks as presets: `--benchmark NAME`), `variants` (the losses),
`settings` (what is trained, `study.json`), `runner` (training, one process
per backend), `stats` (paired comparisons), `report` and `plots`.
"""

from keras_crl.study.benchmarks import BENCHMARKS
from keras_crl.study.benchmarks import Benchmark
from keras_crl.study.benchmarks import get_benchmark
from keras_crl.study.report import main_table
from keras_crl.study.report import write_report
from keras_crl.study.runner import collect
from keras_crl.study.runner import run
from keras_crl.study.runner import train_backend
from keras_crl.study.settings import StudySettings
from keras_crl.study.settings import load_settings
from keras_crl.study.settings import resolve_settings
from keras_crl.study.stats import analyse
from keras_crl.study.stats import holm
from keras_crl.study.stats import paired
from keras_crl.study.stats import sign_test
from keras_crl.study.variants import BASELINE
from keras_crl.study.variants import COMPARED
from keras_crl.study.variants import Variant
from keras_crl.study.variants import parse_variant
from keras_crl.study.variants import sweep_variants
from keras_crl.study.variants import variant

__all__ = [
    "BASELINE",
    "BENCHMARKS",
    "Benchmark",
    "COMPARED",
    "StudySettings",
    "Variant",
    "analyse",
    "collect",
    "get_benchmark",
    "holm",
    "load_settings",
    "main_table",
    "paired",
    "parse_variant",
    "resolve_settings",
    "run",
    "sign_test",
    "sweep_variants",
    "train_backend",
    "variant",
    "write_report",
]
