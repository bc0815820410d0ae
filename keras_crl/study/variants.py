"""The losses a study compares: `Variant`, the default set and the sweep grid."""

import dataclasses
import math

# The alpha x beta grid of `--sweep`.
SWEEP_ALPHAS = (0.0, 0.5, 1.0)
SWEEP_BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One loss of the study: `"ce"`, `"nllr"` or `"crl"` with its alpha, beta.

    Use `variant()` to build one: it maps CRL settings that are another loss
    exactly (`beta = 0` is cross-entropy, `alpha = 0, beta = 1` is NLLR) to
    that loss, so the sweep never trains the same loss twice.
    """

    loss: str
    alpha: float = 0.0
    beta: float = 0.0

    @property
    def name(self):
        """The run folder's name, e.g. `crl-a0-b0.25`."""
        if self.loss == "crl":
            return f"crl-a{self.alpha:g}-b{self.beta:g}"
        return self.loss

    @property
    def label(self):
        if self.loss == "crl":
            return f"CRL(α={self.alpha:g}, β={self.beta:g})"
        return {"ce": "CE", "nllr": "NLLR"}[self.loss]

    def as_record(self):
        """The fields every run record and summary row carries for its loss."""
        return {
            "variant": self.name,
            "label": self.label,
            "loss": self.loss,
            "alpha": self.alpha,
            "beta": self.beta,
        }


def variant(loss, alpha=0.0, beta=0.0):
    """The canonical `Variant` of a loss and its CRL parameters.

    Args:
        loss: `"ce"`, `"nllr"` or `"crl"`.
        alpha: CRL's alpha (>= 0); ignored by `"ce"` and `"nllr"`.
        beta: CRL's beta (>= 0); ignored by `"ce"` and `"nllr"`.

    Returns:
        A `Variant`. `crl` with `beta = 0` is `ce` (the competing term is
        multiplied by zero), `crl` with `alpha = 0, beta = 1` is `nllr`.

    Example:

    >>> variant("crl", 0.5, 0.0).name
    'ce'
    """
    if loss not in ("ce", "nllr", "crl"):
        raise ValueError(f"Unknown loss {loss!r}. Valid losses: ce, nllr, crl.")
    alpha, beta = float(alpha), float(beta)
    if loss == "crl":
        if alpha < 0 or beta < 0 or not (math.isfinite(alpha) and math.isfinite(beta)):
            raise ValueError(f"CRL needs finite alpha >= 0 and beta >= 0; got {alpha}, {beta}.")
        if beta == 0:
            return Variant("ce", 0.0, 0.0)
        if alpha == 0 and beta == 1:
            return Variant("nllr", 0.0, 1.0)
        return Variant("crl", alpha, beta)
    return Variant(loss, 0.0, 1.0 if loss == "nllr" else 0.0)


BASELINE = variant("ce")
# CE, NLLR, the authors' release (alpha 0, beta 0.25) and a loss that stays
# positive (alpha 1, beta 1).
COMPARED = (BASELINE, variant("nllr"), variant("crl", 0, 0.25), variant("crl", 1, 1))


def parse_variant(text):
    """`"crl:ALPHA:BETA"`, `"ce"` or `"nllr"` (an `--extra` value) as a `Variant`."""
    parts = text.strip().lower().split(":")
    try:
        if parts[0] == "crl" and len(parts) == 3:
            return variant("crl", float(parts[1]), float(parts[2]))
        if parts[0] in ("ce", "nllr") and len(parts) == 1:
            return variant(parts[0])
    except ValueError as error:
        raise ValueError(f"Bad loss {text!r}: {error}") from None
    raise ValueError(f"Bad loss {text!r}: write crl:ALPHA:BETA (e.g. crl:0.5:0.5), ce or nllr.")


def sweep_variants():
    """The alpha x beta grid, canonical (its beta = 0 column is CE)."""
    return [variant("crl", a, b) for a in SWEEP_ALPHAS for b in SWEEP_BETAS]


def unique_variants(variants):
    """`variants` without repeats (by name), in order."""
    seen = {}
    for v in variants:
        seen.setdefault(v.name, v)
    return list(seen.values())
