"""The kinds of anomaly scorer, the default scorer of each top-level class and the detectors of
the evaluation, all derived from the detector registry (models.detectors; no torch here: the
settings and the CLI need these names without loading the networks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from models.detectors import evaluation_order, get_scorer, scorer_kinds

SCORER_KINDS: Final[tuple[str, ...]] = scorer_kinds()
if TYPE_CHECKING:
    ScorerKind = str
else:  # the registry's scorers, for the settings' validation (pydantic)
    ScorerKind = Literal[SCORER_KINDS]

# The paper's best model per class (its Table 1): MCDSVDD for Transient and Periodic, AE for
# Stochastic.
PAPER_BEST_SCORERS: Final[dict[str, ScorerKind]] = {
    "Transient": "mcdsvdd",
    "Stochastic": "ae",
    "Periodic": "mcdsvdd",
}
# ZTF's default: our small MCDSVDD-NN ensemble, better than the paper's best in every class over
# four split seeds (docs/results.md) and as fast end to end (README, "Models").
DEFAULT_SCORERS: Final[dict[str, ScorerKind]] = {
    "Transient": "mcdsvdd-ens-lite",
    "Stochastic": "mcdsvdd-ens-lite",
    "Periodic": "mcdsvdd-ens-lite",
}
# Per survey: LSST keeps the paper's best (its features are not the paper's, and no ensemble is
# evaluated on them) and adds its unrouted model (All) for Rubin's alert packets, which carry
# no classifier probabilities - the Rubin tutorial's Isolation Forest.
SURVEY_DEFAULT_SCORERS: Final[dict[str, dict[str, ScorerKind]]] = {
    "ztf": DEFAULT_SCORERS,
    "lsst": {**PAPER_BEST_SCORERS, "All": "iforest"},
}


# The detectors of the paper's Table 1, in its order ...
PAPER_DETECTORS: Final[tuple[str, ...]] = evaluation_order("paper")
# ... the seven of `alert-anomaly evaluate`: those and the Rubin tutorial's DistClassiPy ...
DETECTORS: Final[tuple[str, ...]] = evaluation_order("paper", "tutorial")
# ... and ours, not in the table: evaluated on request (--detectors), reported after them.
VARIANTS: Final[tuple[str, ...]] = evaluation_order("variant")


def check_scorer(kind: str) -> ScorerKind:
    """``kind`` if it is a scorer (a kind with a bundle format); BundleError otherwise."""
    return get_scorer(kind).name
