"""keras-crl: the Competing Ratio Loss for Keras 3 on every backend."""

__version__ = "0.1.0"
