"""The kinds of anomaly scorer, the default scorer of each top-level class and the detectors of
the evaluation (no torch here: the settings and the CLI need these names without loading the
networks)."""

from __future__ import annotations

from typing import Final, Literal, get_args

from models.exceptions import BundleError

ScorerKind = Literal["mcdsvdd", "ae", "deepsvdd", "vae", "mcdsvdd-nn"]
SCORER_KINDS: Final[tuple[str, ...]] = get_args(ScorerKind)
SVDD_KINDS: Final[tuple[str, ...]] = ("mcdsvdd", "deepsvdd", "mcdsvdd-nn")  # trained to centres
MULTI_CENTRE_KINDS: Final[tuple[str, ...]] = ("mcdsvdd", "mcdsvdd-nn")  # a centre per subclass

# The paper's best model per class (its Table 1): MCDSVDD for Transient and Periodic, AE for
# Stochastic.
DEFAULT_SCORERS: Final[dict[str, ScorerKind]] = {
    "Transient": "mcdsvdd",
    "Stochastic": "ae",
    "Periodic": "mcdsvdd",
}


# The detectors of the paper's Table 1, in its order ...
DETECTORS: Final[tuple[str, ...]] = ("iforest", "ocsvm", "ae", "vae", "deepsvdd", "mcdsvdd")
# ... and ours, not in the table: evaluated on request (--detectors), reported after the six.
VARIANTS: Final[tuple[str, ...]] = ("mcdsvdd-nn",)


def check_scorer(kind: str) -> ScorerKind:
    if kind not in SCORER_KINDS:
        raise BundleError(f"unknown scorer {kind!r}; known scorers: {', '.join(SCORER_KINDS)}")
    return kind  # type: ignore[return-value]
