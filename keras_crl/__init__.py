"""keras-crl: the Competing Ratio Loss for Keras 3 on every backend.

`import keras_crl` gives the losses; the model zoo, data sets, recipes and
training loop live in `keras_crl.models`, `keras_crl.data`,
`keras_crl.recipes` and `keras_crl.train`.

Importing the package does not import Keras: the losses load on first use,
so `keras-crl --backend torch` can choose the backend before Keras starts.
"""

from typing import TYPE_CHECKING

from keras_crl import backends as _backends

# Before Keras is first imported: its default backend, TensorFlow, may be missing.
_backends.ensure_usable_backend()

if TYPE_CHECKING:  # what the lazy names below are, for readers and tools
    from keras_crl.losses import CompetingRatioLoss
    from keras_crl.losses import NegativeLogLikelihoodRatioLoss
    from keras_crl.losses import competing_ratio_loss
    from keras_crl.losses import negative_log_likelihood_ratio_loss

__version__ = "0.2.0"

__all__ = [
    "CompetingRatioLoss",
    "NegativeLogLikelihoodRatioLoss",
    "competing_ratio_loss",
    "negative_log_likelihood_ratio_loss",
]


def __getattr__(name):
    if name in __all__ or name == "losses":
        from keras_crl import losses

        return losses if name == "losses" else getattr(losses, name)
    raise AttributeError(f"module 'keras_crl' has no attribute {name!r}")
