"""The ALeRCE light-curve taxonomy: three top-level classes and their fifteen subclasses."""

from __future__ import annotations

from typing import Final

from models.exceptions import ConfigurationError

TOP_CLASSES: Final[tuple[str, ...]] = ("Transient", "Stochastic", "Periodic")
# The class of an unrouted model: trained on every class, scoring alerts that carry no classifier
# probabilities (raw Rubin alerts); its bundle directory is <survey>/all-<scorer>.
UNROUTED: Final = "All"
MODEL_CLASSES: Final[tuple[str, ...]] = (*TOP_CLASSES, UNROUTED)

SUBCLASSES: Final[dict[str, tuple[str, ...]]] = {
    "Transient": ("SNIa", "SNIbc", "SNII", "SLSN"),
    "Stochastic": ("QSO", "AGN", "Blazar", "CV/Nova", "YSO"),
    "Periodic": ("LPV", "E", "DSCT", "RRL", "CEP", "Periodic-Other"),
}

ALL_SUBCLASSES: Final[tuple[str, ...]] = tuple(s for top in TOP_CLASSES for s in SUBCLASSES[top])

TOP_OF: Final[dict[str, str]] = {sub: top for top in TOP_CLASSES for sub in SUBCLASSES[top]}

# Approximate class counts of the ALeRCE light-curve classifier's labeled set
# (Sánchez-Sáez et al. 2021, AJ 161, 141, Table 1); used for the `alerce` class mix.
ALERCE_LABELED_COUNTS: Final[dict[str, int]] = {
    "SNIa": 1364,
    "SNIbc": 96,
    "SNII": 342,
    "SLSN": 24,
    "QSO": 26168,
    "AGN": 4667,
    "Blazar": 1267,
    "CV/Nova": 871,
    "YSO": 1740,
    "LPV": 14076,
    "E": 37901,
    "DSCT": 732,
    "RRL": 32482,
    "CEP": 618,
    "Periodic-Other": 1256,
}


def top_class_of(subclass: str) -> str:
    """Return the top-level class of ``subclass``; raise ConfigurationError if it is unknown."""
    try:
        return TOP_OF[subclass]
    except KeyError:
        raise ConfigurationError(
            f"unknown subclass {subclass!r}; known subclasses: {', '.join(ALL_SUBCLASSES)}"
        ) from None


def check_top_class(name: str) -> str:
    """Return ``name`` if it is a top-level class; raise ConfigurationError otherwise."""
    if name not in TOP_CLASSES:
        raise ConfigurationError(
            f"unknown top-level class {name!r}; known classes: {', '.join(TOP_CLASSES)}"
        )
    return name


def check_model_class(name: str) -> str:
    """Return ``name`` if a model can be trained for it (a top-level class or UNROUTED);
    raise ConfigurationError otherwise."""
    if name not in MODEL_CLASSES:
        raise ConfigurationError(
            f"unknown top-level class {name!r}; known classes: {', '.join(TOP_CLASSES)} "
            f"(or {UNROUTED}: an unrouted model of every class)"
        )
    return name


def subclasses_of(model_class: str) -> tuple[str, ...]:
    """The subclasses a model of ``model_class`` is trained on (all fifteen for UNROUTED)."""
    check_model_class(model_class)
    return ALL_SUBCLASSES if model_class == UNROUTED else SUBCLASSES[model_class]
