"""keras-crl: the Competing Ratio Loss for Keras 3 on every backend.

`import keras_crl` gives the losses; the model zoo, data sets, recipes and
training loop live in `keras_crl.models`, `keras_crl.data`,
`keras_crl.recipes` and `keras_crl.train`.
"""

from keras_crl import backends as _backends

# Before Keras is first imported: its default backend, TensorFlow, may be missing.
_backends.ensure_usable_backend()

from keras_crl.losses import CompetingRatioLoss  # noqa: E402
from keras_crl.losses import NegativeLogLikelihoodRatioLoss  # noqa: E402
from keras_crl.losses import competing_ratio_loss  # noqa: E402
from keras_crl.losses import negative_log_likelihood_ratio_loss  # noqa: E402

__version__ = "0.2.0"

__all__ = [
    "CompetingRatioLoss",
    "NegativeLogLikelihoodRatioLoss",
    "competing_ratio_loss",
    "negative_log_likelihood_ratio_loss",
]
