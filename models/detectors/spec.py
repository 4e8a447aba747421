"""What a detector kind is: its :class:`DetectorSpec` (names and flags, no torch) and the
:class:`DetectorHooks` that build, train, load and evaluate it (imported on first use, so that
the settings and the CLI can list the kinds without loading the networks)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from numpy.typing import NDArray

    from models.bundle import Bundle, Manifest
    from models.configurations import Configuration
    from models.evaluation.detectors import Detector
    from models.networks import Network
    from models.preprocessing import FeatureScaling
    from models.training import TrainedModel, TrainingConfig

# network: one network in a bundle; ensemble: several; estimator: a fitted scikit-learn-style
# model in a bundle; baseline: evaluated only (no bundle, not a scorer of the service).
Family = Literal["network", "ensemble", "estimator", "baseline"]
# Where `alert-anomaly evaluate` reports it: the paper's Table 1, the Rubin tutorial, ours.
Group = Literal["paper", "tutorial", "variant"]
# How a bundle's raw score is computed (higher = more anomalous), models.networks.AnomalyNet.score
# for the first three: reconstruction error, distance to the nearest centre, to the nearest
# training inlier; ensemble: members' reference distances added; estimator: its own score.
ScoreRule = Literal["reconstruction", "centre", "reference", "ensemble", "estimator"]
Loss = Literal["reconstruction", "elbo", "svdd"]

# The encoder's hidden widths in the paper (its decoder mirrors them), and how many training
# inliers a network keeps as references (mcdsvdd-nn; a random subset beyond).
PAPER_HIDDEN: tuple[int, ...] = (512, 256, 128)
MAX_REFERENCES = 20_000


@dataclass(frozen=True)
class NetworkLayout:
    """The network of a network kind (models.networks.AnomalyNet) and its training loss."""

    loss: Loss
    posterior: bool = False  # the encoder outputs the posterior mean and log-variance (VAE)
    decoder: bool = False  # a mirrored decoder (the autoencoders)
    multi_centre: bool = False  # one centre per training subclass (else one centre)
    references: bool = False  # keeps the training inliers' latents and subclasses


@dataclass(frozen=True)
class DetectorSpec:
    """One detector kind: everything the code asks about it."""

    name: str
    label: str  # in the evaluation's tables and plots
    family: Family
    group: Group
    column: int  # order in the evaluation's reports (the paper's Table 1 first)
    hooks: str  # "module:attribute" of its DetectorHooks, imported on first use
    score: ScoreRule | None = None  # None: no bundle (evaluated only)
    network: NetworkLayout | None = None  # family network
    member: str = ""  # family ensemble: the kind of its members
    pretrained: bool = False  # an autoencoder pretrains its encoder and its centres (SVDDs)
    paper_settings: str = ""  # the kind whose learning rate and latent size the paper gives
    hidden: tuple[int, ...] = PAPER_HIDDEN  # neural: the encoder's hidden widths (an ensemble's
    # members': its member kind's spec keeps the paper's)
    max_references: int = MAX_REFERENCES  # family ensemble: training inliers kept as references
    # The reference code scores normality and reports 1 - AUROC (its scikit-learn detectors):
    # the evaluation's reference-grid AUROC does the same.
    reference_normality: bool = False

    @property
    def scorer(self) -> bool:
        """Whether it has a bundle format (a scorer the service's settings accept)."""
        return self.score is not None

    @property
    def neural(self) -> bool:
        return self.family in ("network", "ensemble")

    @property
    def multi_centre(self) -> bool:
        return self.network is not None and self.network.multi_centre

    def implementation(self) -> DetectorHooks:
        """Its hooks (imports the module that holds them)."""
        return _load(self.hooks)


@cache
def _load(path: str) -> DetectorHooks:
    module, _, attribute = path.partition(":")
    hooks: DetectorHooks = getattr(import_module(module), attribute)
    return hooks


Validation = tuple["NDArray[np.float64]", "NDArray[np.str_]"]


class DetectorHooks(Protocol):
    """How a kind is built, trained, stored, loaded and evaluated; every hook gets its spec."""

    def require(self, spec: DetectorSpec) -> None:
        """Raise MissingExtraError naming the extra it needs, if that is not installed."""

    def build(
        self,
        spec: DetectorSpec,
        n_features: int,
        latent: int,
        n_centres: int,
        state: dict[str, torch.Tensor] | None = None,
    ) -> Network:
        """An untrained network (with the shapes of a saved ``state`` when given)."""

    def train(
        self,
        spec: DetectorSpec,
        features: NDArray[np.float64],
        subclasses: NDArray[np.str_],
        feature_names: tuple[str, ...],
        config: TrainingConfig,
        progress: bool,
        validation: Validation | None,
        scaling: tuple[FeatureScaling, ...] | None,
    ) -> TrainedModel:
        """Train on one class's inliers (models.training.train_model)."""

    def hyperparameters(self, spec: DetectorSpec, config: TrainingConfig) -> dict[str, Any]:
        """The training description a bundle's manifest records."""

    def describe(self, spec: DetectorSpec, metrics: dict[str, Any]) -> str:
        """How training went, in a few words (``alert-anomaly train``'s line)."""

    def load(self, spec: DetectorSpec, manifest: Manifest, weights: Path) -> Bundle:
        """The bundle of a verified manifest from its weights file (checksum verified)."""

    def unavailable(self, spec: DetectorSpec) -> str | None:
        """Why the evaluation cannot run it here (a missing optional extra), else None."""

    def evaluate(
        self,
        spec: DetectorSpec,
        top_class: str,
        names: tuple[str, ...],
        method: Configuration,
        epochs: int,
        seed: int,
        members: int,
    ) -> Detector:
        """An unfitted detector of the evaluation protocol (models.evaluation.detectors)."""
