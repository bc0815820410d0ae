"""Packages outside the core install, imported where they are used.

A core install is keras, numpy and h5py: the losses, recipes, models and
training. The rest come with extras (pyproject.toml): `data` (scikit-learn
for the digits, scipy for SVHN's .mat files, pillow for image folders),
`study` (scipy's t tests, matplotlib's plots) and `all`. Every import of
them goes through `optional_import`, so a missing one is one clear error.
"""

import importlib

# The pip name of each optional top-level module, where the two differ.
_PACKAGES = {"sklearn": "scikit-learn", "PIL": "pillow"}


class MissingOptionalDependency(ImportError):
    """A feature needs a package that the core install leaves out."""


def optional_import(module, extra, purpose):
    """Imports `module`; if its package is missing, says which extra installs it.

    Args:
        module: The dotted module name, e.g. `"scipy.stats"`.
        extra: The keras-crl extra that installs its package, e.g. `"study"`.
        purpose: What needs it, the subject of the message, e.g.
            `"the study's t test"`.

    Returns:
        The imported module.

    Raises:
        MissingOptionalDependency: An `ImportError` such as "the study's t
            test needs scipy: pip install 'keras-crl[study]'" when the
            package is not installed. A package that is installed but fails
            to import raises its own error.

    Example:

    >>> optional_import("math", "data", "this example").sqrt(4.0)
    2.0
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.partition(".")[0]
        if (error.name or "").partition(".")[0] != top:
            raise
        package = _PACKAGES.get(top, top)
        raise MissingOptionalDependency(
            f"{purpose} needs {package}: pip install 'keras-crl[{extra}]'"
        ) from error
