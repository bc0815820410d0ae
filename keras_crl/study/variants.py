"""The losses a study compares: `Variant`, the default set and the sweep grid."""

import dataclasses
import math

# The alpha x beta grid of `--sweep`.
SWEEP_ALPHAS = (0.0, 0.5, 1.0)
SWEEP_BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)
BUILT_IN = ("ce", "nllr", "crl", "focal")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One loss of the study.

    `loss` is `"ce"`, `"nllr"`, `"crl"`, `"focal"` (Keras'
    `CategoricalFocalCrossentropy`) or a user loss's import path
    (`"package.module:Class"`); `options` are the keyword arguments of focal
    or of the user loss, as sorted `(name, value)` pairs. Use `variant()` to
    build one: it maps CRL settings that are another loss exactly
    (`beta = 0` is cross-entropy, `alpha = 0, beta = 1` is NLLR) to that
    loss, so the sweep never trains the same loss twice.
    """

    loss: str
    alpha: float = 0.0
    beta: float = 0.0
    label_smoothing: float = 0.0
    options: tuple = ()

    @property
    def name(self):
        """The run folder's name, e.g. `crl-a0-b0.25` or `ce-ls0.1`."""
        if self.loss == "crl":
            name = f"crl-a{self.alpha:g}-b{self.beta:g}"
        else:
            name = self.loss.rpartition(":")[2] if ":" in self.loss else self.loss
        name += "".join(f"-{k}{_text(v)}" for k, v in self.options)
        if self.label_smoothing:
            name += f"-ls{self.label_smoothing:g}"
        return name

    @property
    def label(self):
        """How tables and plots name it, e.g. `CRL(α=0, β=0.25)+LS(0.1)`."""
        if self.loss == "crl":
            label = f"CRL(α={self.alpha:g}, β={self.beta:g})"
        elif self.loss == "focal":
            label = f"Focal(γ={dict(self.options).get('gamma', 2.0):g})"
        elif ":" in self.loss:
            args = ", ".join(f"{k}={_text(v)}" for k, v in self.options)
            label = f"{self.loss.rpartition(':')[2]}({args})"
        else:
            label = {"ce": "CE", "nllr": "NLLR"}[self.loss]
        if self.label_smoothing:
            label += f"+LS({self.label_smoothing:g})"
        return label

    @property
    def spec(self):
        """The `--extra` text that `parse_variant` reads back into this variant."""
        parts = [self.loss]
        if self.loss == "crl":
            parts += [f"{self.alpha:g}", f"{self.beta:g}"]
        parts += [
            f"{k}={v!r}" if isinstance(v, str) else f"{k}={_text(v)}" for k, v in self.options
        ]
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing:g}")
        return ":".join(parts)

    def train_fields(self):
        """The `TrainConfig` fields that select this loss (alpha and beta: the
        CRL family's only)."""
        crl_family = self.loss in ("crl", "nllr", "ce")
        return {
            "loss": self.loss,
            "alpha": self.alpha if crl_family else None,
            "beta": self.beta if crl_family else None,
            "label_smoothing": self.label_smoothing,
            "loss_options": dict(self.options),
        }

    def as_record(self):
        """The fields every run record and summary row carries for its loss."""
        fields = {**self.train_fields(), "alpha": self.alpha, "beta": self.beta}
        return {"variant": self.name, "label": self.label, **fields}


def _text(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def variant(loss, alpha=0.0, beta=0.0, label_smoothing=0.0, options=None):
    """The canonical `Variant` of a loss and its parameters.

    Args:
        loss: `"ce"`, `"nllr"`, `"crl"`, `"focal"` or `"package.module:Class"`.
        alpha: CRL's alpha (>= 0); ignored by the others.
        beta: CRL's beta (>= 0); ignored by the others.
        label_smoothing: Label smoothing in `[0, 1)` (built-in losses; a user
            loss takes its own options).
        options: Keyword arguments of `"focal"` (e.g. `gamma`) or of the user
            loss.

    Returns:
        A `Variant`. `crl` with `beta = 0` is `ce` (the competing term is
        multiplied by zero), `crl` with `alpha = 0, beta = 1` is `nllr`.

    Example:

    >>> variant("crl", 0.5, 0.0).name
    'ce'
    >>> variant("crl", 0, 0.25, label_smoothing=0.1).label
    'CRL(α=0, β=0.25)+LS(0.1)'
    """
    if loss not in BUILT_IN and ":" not in loss:
        raise ValueError(
            f"Unknown loss {loss!r}. Valid losses: {', '.join(BUILT_IN)}, or a user loss "
            "as package.module:Class."
        )
    alpha, beta, label_smoothing = float(alpha), float(beta), float(label_smoothing)
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}.")
    if ":" in loss and label_smoothing:
        raise ValueError(f"{loss}: pass label smoothing as the loss's own option, if it has one.")
    options = tuple(sorted((options or {}).items()))
    if loss in ("ce", "nllr") and options:
        raise ValueError(f"{loss} takes no options; got {dict(options)}.")
    if loss == "crl":
        if alpha < 0 or beta < 0 or not (math.isfinite(alpha) and math.isfinite(beta)):
            raise ValueError(f"CRL needs finite alpha >= 0 and beta >= 0; got {alpha}, {beta}.")
        if options:
            raise ValueError(f"crl takes alpha, beta and label_smoothing; got {dict(options)}.")
        if beta == 0:
            return Variant("ce", 0.0, 0.0, label_smoothing)
        if alpha == 0 and beta == 1:
            return Variant("nllr", 0.0, 1.0, label_smoothing)
        return Variant("crl", alpha, beta, label_smoothing)
    if loss == "nllr":
        return Variant("nllr", 0.0, 1.0, label_smoothing)
    return Variant(loss, 0.0, 0.0, label_smoothing, options)


BASELINE = variant("ce")
AUTHORS = variant("crl", 0, 0.25)
# CE, NLLR, the authors' release (alpha 0, beta 0.25) and a loss that stays
# positive (alpha 1, beta 1); then what a user would pick instead in 2026:
# label smoothing 0.1 (Szegedy et al. 2016), Keras' focal loss with the
# gamma of Lin et al. (2017), and CRL with label smoothing.
COMPARED = (
    BASELINE,
    variant("nllr"),
    AUTHORS,
    variant("crl", 1, 1),
    variant("ce", label_smoothing=0.1),
    variant("focal", options={"gamma": 2.0}),
    variant("crl", 0, 0.25, label_smoothing=0.1),
)


def parse_variant(text):
    """An `--extra` value as a `Variant`.

    `ce`, `nllr`, `crl:ALPHA:BETA` and `focal`, each optionally followed by
    `:name=value` options (`label_smoothing=0.1`; focal's `gamma=2`), or a
    user loss `package.module:Class:name=value:...`, whose options are its
    constructor's keyword arguments. Values are Python literals (numbers,
    booleans, quoted strings) or else plain strings. The user loss is only
    named here; `keras_crl.train.make_loss` imports and checks it.

    Example:

    >>> parse_variant("crl:0.5:0.5").name
    'crl-a0.5-b0.5'
    >>> parse_variant("mypkg.losses:PolyLoss:epsilon=1").options
    (('epsilon', 1),)
    """
    import ast

    parts = [p.strip() for p in text.strip().split(":")]
    head = parts[0].lower()
    try:
        if head in BUILT_IN:
            loss, rest = head, parts[1:]
        elif len(parts) >= 2 and parts[0] and parts[1].isidentifier():
            loss, rest = f"{parts[0]}:{parts[1]}", parts[2:]
        else:
            raise ValueError("expected ce, nllr, crl:ALPHA:BETA, focal or package.module:Class")
        alpha = beta = 0.0
        if loss == "crl":
            if len(rest) < 2 or "=" in rest[0] or "=" in rest[1]:
                raise ValueError("crl needs crl:ALPHA:BETA")
            alpha, beta, rest = float(rest[0]), float(rest[1]), rest[2:]
        options = {}
        for part in rest:
            key, eq, value = part.partition("=")
            if not eq or not key.isidentifier():
                raise ValueError(f"{part!r} is not name=value")
            try:
                options[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                options[key] = value
        smoothing = options.pop("label_smoothing", 0.0) if ":" not in loss else 0.0
        return variant(loss, alpha, beta, smoothing, options)
    except ValueError as error:
        raise ValueError(
            f"Bad loss {text!r}: {str(error).rstrip('.')}. Write e.g. crl:0.5:0.5, "
            "ce:label_smoothing=0.1, focal:gamma=2 or mypkg.losses:PolyLoss:epsilon=1."
        ) from None


def sweep_variants():
    """The alpha x beta grid, canonical (its beta = 0 column is CE)."""
    return [variant("crl", a, b) for a in SWEEP_ALPHAS for b in SWEEP_BETAS]


def unique_variants(variants):
    """`variants` without repeats (by name), in order."""
    seen = {}
    for v in variants:
        seen.setdefault(v.name, v)
    return list(seen.values())
