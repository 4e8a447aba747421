"""The kinds of anomaly scorer, the default scorer of each top-level class and the detectors of
the evaluation (no torch here: the settings and the CLI need these names without loading the
networks)."""

from __future__ import annotations

from typing import Final, Literal, get_args

from models.exceptions import BundleError

ScorerKind = Literal[
    "mcdsvdd", "ae", "deepsvdd", "vae", "mcdsvdd-nn", "mcdsvdd-ens", "iforest", "distclassipy"
]
SCORER_KINDS: Final[tuple[str, ...]] = get_args(ScorerKind)
# The Rubin tutorial's detectors (models.estimators): scikit-learn-style estimators, not networks.
ESTIMATOR_KINDS: Final[tuple[str, ...]] = ("iforest", "distclassipy")
NETWORK_KINDS: Final[tuple[str, ...]] = tuple(k for k in SCORER_KINDS if k not in ESTIMATOR_KINDS)
SVDD_KINDS: Final[tuple[str, ...]] = ("mcdsvdd", "deepsvdd", "mcdsvdd-nn", "mcdsvdd-ens")
# trained to centres (above), with a centre per subclass (below)
MULTI_CENTRE_KINDS: Final[tuple[str, ...]] = ("mcdsvdd", "mcdsvdd-nn")
# Ensembles of K mcdsvdd-nn networks, one per fold of the training inliers (models.training).
ENSEMBLE_KINDS: Final[tuple[str, ...]] = ("mcdsvdd-ens",)

# The paper's best model per class (its Table 1): MCDSVDD for Transient and Periodic, AE for
# Stochastic.
DEFAULT_SCORERS: Final[dict[str, ScorerKind]] = {
    "Transient": "mcdsvdd",
    "Stochastic": "ae",
    "Periodic": "mcdsvdd",
}
# Per survey: LSST adds its unrouted model (All) for Rubin's alert packets, which carry no
# classifier probabilities - the Rubin tutorial's Isolation Forest.
SURVEY_DEFAULT_SCORERS: Final[dict[str, dict[str, ScorerKind]]] = {
    "ztf": DEFAULT_SCORERS,
    "lsst": {**DEFAULT_SCORERS, "All": "iforest"},
}


# The detectors of the paper's Table 1, in its order ...
PAPER_DETECTORS: Final[tuple[str, ...]] = ("iforest", "ocsvm", "ae", "vae", "deepsvdd", "mcdsvdd")
# ... the seven of `alert-anomaly evaluate`: those and the Rubin tutorial's DistClassiPy ...
DETECTORS: Final[tuple[str, ...]] = (*PAPER_DETECTORS, "distclassipy")
# ... and ours, not in the table: evaluated on request (--detectors), reported after them.
VARIANTS: Final[tuple[str, ...]] = ("mcdsvdd-nn", "mcdsvdd-ens")


def check_scorer(kind: str) -> ScorerKind:
    if kind not in SCORER_KINDS:
        raise BundleError(f"unknown scorer {kind!r}; known scorers: {', '.join(SCORER_KINDS)}")
    return kind  # type: ignore[return-value]
