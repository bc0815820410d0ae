"""`python -m keras_crl.cli ARGS`: the `keras-crl` command."""

import sys

from keras_crl.cli import main

if __name__ == "__main__":
    sys.exit(main())
