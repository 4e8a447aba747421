"""Training of the anomaly networks with the paper's settings: Adam, batches of 1024 drawn with
balanced sampling by subclass, early stopping on the validation loss (patience 100), the paper's
learning rate and latent size per class and scorer.

MCDSVDD and Deep SVDD first pretrain an autoencoder; the encoder's mean latent per subclass (one
overall mean for Deep SVDD), with near-zero coordinates pushed to +-0.01, become the centres.
The encoder is then trained to pull each latent towards its own subclass's centre. Pretraining,
centres, preprocessing, initialisation and stopping follow the named configuration
(:mod:`models.configurations`). What each kind trains, and how, is its hooks' business
(:mod:`models.detectors`); this module holds the settings, the data splits and the entry point.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from models.configurations import (
    DEFAULT_CONFIGURATION,
    Configuration,
    ConfigurationName,
    configured,
)
from models.detectors import get
from models.detectors.fitting import balanced_resample, new_network
from models.detectors.svdd import CENTRE_EPS
from models.exceptions import ConfigurationError, DataError
from models.features import paper_features
from models.networks import Network
from models.preprocessing import FeatureScaling, Preprocessor, fit_scaling, paper_scaling
from models.scorers import ScorerKind, check_scorer
from models.table import AlertTable
from models.taxonomy import check_model_class

if TYPE_CHECKING:
    from models.estimators import Estimator

__all__ = [  # the training helpers of models.detectors, long imported from here
    "CENTRE_EPS", "balanced_resample", "new_network",
]  # fmt: skip

ENSEMBLE_MEMBERS = 5  # the paper's K folds
CALIBRATION_LEVELS = tuple(float(q) for q in np.linspace(0.0, 100.0, 1001))

# (top-level class, scorer) -> (learning rate, latent size), from the paper's Table of settings.
PAPER_SETTINGS: dict[tuple[str, str], tuple[float, int]] = {
    ("Transient", "mcdsvdd"): (5e-4, 32),
    ("Transient", "ae"): (5e-4, 32),
    ("Periodic", "mcdsvdd"): (5e-4, 64),
    ("Periodic", "ae"): (1e-3, 64),
    ("Stochastic", "mcdsvdd"): (5e-4, 64),
    ("Stochastic", "ae"): (5e-3, 64),
}


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters; ``lr``/``latent`` default to the paper's values for the class, the rest
    of the method to the named configuration (models.configurations)."""

    scorer: ScorerKind
    top_class: str
    lr: float | None = None
    latent: int | None = None
    batch_size: int = 1024
    max_epochs: int = 1000
    pretrain_epochs: int | None = None  # default: ours 300, paper max_epochs
    patience: int = 100
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "cpu"
    configuration: ConfigurationName = DEFAULT_CONFIGURATION
    members: int = ENSEMBLE_MEMBERS  # mcdsvdd-ens: networks, one per fold of the inliers
    hidden: tuple[int, ...] | None = None  # the encoder's widths; default: the kind's (its spec)
    reference_bugs: tuple[str, ...] = ()  # evaluation only: models.configurations

    def __post_init__(self) -> None:
        check_scorer(self.scorer)
        check_model_class(self.top_class)
        configured(self.configuration, self.reference_bugs)
        if self.members < 2:
            raise ConfigurationError(f"an ensemble needs 2 or more members, got {self.members}")
        for name in ("batch_size", "max_epochs", "patience"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pretrain_epochs is not None and self.pretrain_epochs < 0:
            raise ConfigurationError(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")
        if not 0.0 < self.val_fraction < 0.5:
            raise ConfigurationError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigurationError(f"lr must be positive, got {self.lr}")
        if self.latent is not None and self.latent <= 0:
            raise ConfigurationError(f"latent must be positive, got {self.latent}")

    @property
    def method(self) -> Configuration:
        return configured(self.configuration, self.reference_bugs)

    @property
    def _paper_settings(self) -> tuple[float, int]:
        kind = get(self.scorer).paper_settings or self.scorer
        return PAPER_SETTINGS.get((self.top_class, kind), (5e-4, 64))

    @property
    def resolved_lr(self) -> float:
        return self.lr if self.lr is not None else self._paper_settings[0]

    @property
    def resolved_latent(self) -> int:
        if not get(self.scorer).neural:
            return 0  # no network
        return self.latent if self.latent is not None else self._paper_settings[1]

    @property
    def resolved_hidden(self) -> tuple[int, ...]:
        return self.hidden if self.hidden is not None else get(self.scorer).hidden

    @property
    def resolved_pretrain_epochs(self) -> int:
        if self.pretrain_epochs is not None:
            return self.pretrain_epochs
        return self.max_epochs if self.method.pretraining == "class_ae" else 300

    @property
    def pretrain_lr(self) -> float:
        """Learning rate of the (MC)DSVDD's autoencoder pretraining."""
        if self.method.pretraining == "class_ae":
            return PAPER_SETTINGS[(self.top_class, "ae")][0]
        return self.resolved_lr

    def as_dict(self) -> dict[str, Any]:
        """The hyper-parameters a bundle's manifest records (the kind's hooks say which)."""
        spec = get(self.scorer)
        return spec.implementation().hyperparameters(spec, self)


@dataclass
class TrainedModel:
    net: Network | None  # None for the estimator kinds
    preprocessor: Preprocessor
    centre_subclasses: tuple[str, ...]
    calibration_scores: tuple[float, ...]  # training inliers' score quantiles (CALIBRATION_LEVELS)
    metrics: dict[str, Any] = field(default_factory=dict)
    estimator: Estimator | None = None  # iforest, distclassipy (models.estimators)


def paper_columns(table: AlertTable) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The table's features that the paper's models use (:func:`models.features.paper_features`,
    in that order) and their names; DataError naming the ones the table lacks."""
    names = paper_features()
    missing = [n for n in names if n not in table.feature_names]
    if missing:
        raise DataError(
            f"the table lacks {len(missing)} of the paper's {len(names)} features: "
            f"{', '.join(missing)}"
        )
    return table.columns(names), names


def model_columns(table: AlertTable) -> tuple[NDArray[np.float64], tuple[str, ...]]:
    """The features a model of the table's survey uses, in order: ZTF, the paper's
    (:func:`paper_columns`); LSST, the diaObject fields every Rubin alert schema version carries
    (the table's ``feature_sets['diaobject']`` metadata, else :func:`models.rubin.feature_set`).
    DataError naming the ones the table lacks."""
    if table.metadata.get("survey") != "lsst":
        return paper_columns(table)
    saved = table.metadata.get("feature_sets", {}).get("diaobject")
    if saved:
        names = tuple(str(n) for n in saved)
    else:
        from models.rubin import feature_set

        names = feature_set()
    missing = [n for n in names if n not in table.feature_names]
    if missing:
        raise DataError(f"the table lacks {len(missing)} of the LSST model's features: {missing}")
    return table.columns(names), names


def stratified_split(
    labels: NDArray[np.str_], fraction: float, rng: np.random.Generator
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Indices (train, held) with ``fraction`` of every label held out (at least one when the
    label has two or more rows)."""
    train, held = [], []
    for label in sorted(set(labels.tolist())):
        idx = rng.permutation(np.flatnonzero(labels == label))
        k = round(fraction * idx.size)
        k = min(max(k, 1), idx.size - 1) if idx.size >= 2 else 0
        held.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def stratified_folds(
    labels: NDArray[np.str_], k: int, rng: np.random.Generator
) -> list[NDArray[np.intp]]:
    """K disjoint folds covering every row, each label's rows dealt evenly among them."""
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == lab)) for lab in sorted(set(labels.tolist()))]
    )
    return [np.sort(order[j::k]) for j in range(k)]


def configured_scaling(
    x: NDArray[np.float64], names: tuple[str, ...], config: TrainingConfig
) -> tuple[FeatureScaling, ...]:
    """The configuration's preprocessing: the paper's fixed scales, or ours fitted on ``x``."""
    if (method := config.method).preprocessing == "paper":
        return paper_scaling(names, reference_bugs=method.reference_bugs, features=x)
    return fit_scaling(x, names)


@dataclass(frozen=True)
class Inliers:
    """One class's inliers split into fitted and held-out (early stopping) rows, with the
    subclass names of the fitted rows and the preprocessing."""

    x_fit: NDArray[np.float64]
    y_fit: NDArray[np.str_]
    x_held: NDArray[np.float64]
    y_held: NDArray[np.str_]
    names: tuple[str, ...]
    preprocessor: Preprocessor
    started: float  # time.perf_counter() when training started


def split_inliers(
    features: NDArray[np.float64],
    subclasses: NDArray[np.str_],
    feature_names: tuple[str, ...],
    config: TrainingConfig,
    validation: tuple[NDArray[np.float64], NDArray[np.str_]] | None,
    scaling: tuple[FeatureScaling, ...] | None,
) -> Inliers:
    """Seed torch, hold out ``validation`` (default: a stratified ``val_fraction`` of the rows)
    and fix the preprocessing (default: the configuration's, fitted on the fitted rows)."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    if validation is None:
        rng = np.random.default_rng(config.seed)
        train_idx, val_idx = stratified_split(subclasses, config.val_fraction, rng)
        x_fit, y_fit = features[train_idx], subclasses[train_idx]
        x_held, y_held = features[val_idx], subclasses[val_idx]
    else:
        x_fit, y_fit = features, subclasses
        x_held, y_held = validation
    names = tuple(sorted(set(y_fit.tolist())))
    unknown = sorted(set(y_held.tolist()) - set(names))
    if unknown:
        raise DataError(f"validation subclasses {unknown} have no training rows")
    preprocessor = Preprocessor(scaling or configured_scaling(x_fit, feature_names, config))
    return Inliers(x_fit, y_fit, x_held, y_held, names, preprocessor, started)


def calibration_scores(scores: NDArray[np.float64]) -> tuple[float, ...]:
    """The training inliers' score quantiles at CALIBRATION_LEVELS."""
    return tuple(float(v) for v in np.percentile(scores, CALIBRATION_LEVELS))


def train_model(
    features: NDArray[np.float64],
    subclasses: NDArray[np.str_],
    feature_names: tuple[str, ...],
    config: TrainingConfig,
    progress: bool = True,
    validation: tuple[NDArray[np.float64], NDArray[np.str_]] | None = None,
    scaling: tuple[FeatureScaling, ...] | None = None,
) -> TrainedModel:
    """Train one scorer on the inliers ``features`` (raw, NaN = undefined) of one class, as its
    kind's hooks do (models.detectors).

    Early stopping uses ``validation`` (features, subclasses) when given, e.g. the held-out fold
    of the evaluation; otherwise a stratified ``val_fraction`` of the rows, which are not fitted.
    ``scaling`` fixes the preprocessing (default: the configuration's). An ensemble kind makes
    its own folds: see :func:`models.detectors.ensemble.train_ensemble`.
    """
    if features.shape[0] != subclasses.shape[0]:
        raise DataError("features and labels have different lengths")
    if features.shape[0] < 8:
        raise DataError(f"{features.shape[0]} objects are too few to train a {config.scorer}")
    spec = get(config.scorer)
    hooks = spec.implementation()
    return hooks.train(
        spec, features, subclasses, feature_names, config, progress, validation, scaling
    )
