"""keras-crl: the Competing Ratio Loss for Keras 3 on every backend.

`import keras_crl` gives the losses; the model zoo, data sets, recipes and
training loop live in `keras_crl.models`, `keras_crl.data`,
`keras_crl.recipes` and `keras_crl.train`.
"""

from keras_crl.losses import CompetingRatioLoss
from keras_crl.losses import NegativeLogLikelihoodRatioLoss
from keras_crl.losses import competing_ratio_loss
from keras_crl.losses import negative_log_likelihood_ratio_loss

__version__ = "0.1.0"

__all__ = [
    "CompetingRatioLoss",
    "NegativeLogLikelihoodRatioLoss",
    "competing_ratio_loss",
    "negative_log_likelihood_ratio_loss",
]
