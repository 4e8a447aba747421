"""The six detectors of the paper's Table 1 and the Rubin tutorial's DistClassiPy behind one
interface: fit on inliers (the neural ones stop early on validation inliers), then score (higher =
more anomalous). Every detector uses the preprocessing, and the neural ones the training method,
of the evaluated configuration (models.configurations): ``paper`` the reference's fixed scales,
``ours`` scales fitted on the training rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from models.bundle import Bundle
from models.configurations import Configuration
from models.detectors import get
from models.exceptions import ConfigurationError
from models.extras import SIM, require
from models.networks import Ensemble
from models.preprocessing import Preprocessor, fit_scaling, paper_scaling
from models.scorers import DETECTORS, VARIANTS
from models.scoring import Scorer
from models.training import ENSEMBLE_MEMBERS, TrainingConfig, train_model

Validation = tuple[NDArray[np.float64], NDArray[np.str_]]
Matrix = NDArray[np.float64]

LABELS: Final[dict[str, str]] = {kind: get(kind).label for kind in DETECTORS + VARIANTS}


class Detector(Protocol):
    def fit(
        self, features: NDArray[np.float64], subclasses: NDArray[np.str_], validation: Validation
    ) -> None: ...

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]: ...


class FeatureDetector:
    """A detector fitted on the preprocessed features by its kind's ``fit`` (models.detectors:
    Isolation Forest, one-class SVM, DistClassiPy's DistanceAnomaly with the inliers'
    subclasses as its known classes)."""

    def __init__(
        self,
        names: tuple[str, ...],
        method: Configuration,
        seed: int,
        fit: Callable[
            [Matrix, NDArray[np.str_], Configuration, int], Callable[[Matrix], NDArray[np.float64]]
        ],
    ) -> None:
        self.names, self.method, self.seed, self._fit = names, method, seed, fit
        self._preprocessor: Preprocessor | None = None
        self._score: Callable[[Matrix], NDArray[np.float64]] | None = None

    def _transform(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._preprocessor is not None
        with torch.no_grad():
            x = self._preprocessor(torch.as_tensor(features, dtype=torch.float32))
        return np.asarray(x.numpy(), dtype=np.float64)

    def fit(
        self, features: NDArray[np.float64], subclasses: NDArray[np.str_], validation: Validation
    ) -> None:
        require("sklearn.ensemble", SIM, "the evaluation")
        require("sklearn.svm", SIM, "the evaluation")
        if self.method.preprocessing == "paper":
            bugs = self.method.reference_bugs
            scaling = paper_scaling(self.names, reference_bugs=bugs, features=features)
        else:
            scaling = fit_scaling(features, self.names)
        self._preprocessor = Preprocessor(scaling)
        self._score = self._fit(self._transform(features), subclasses, self.method, self.seed)

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """Higher = more anomalous."""
        assert self._score is not None
        return self._score(self._transform(features))


class NeuralDetector:
    """AE, VAE, Deep SVDD, MCDSVDD or our variants, trained by models.training; ``members``:
    the networks of an ensemble kind (models.detectors)."""

    def __init__(
        self,
        kind: str,
        top_class: str,
        names: tuple[str, ...],
        method: Configuration,
        epochs: int,
        seed: int,
        members: int,
    ) -> None:
        self.names = names
        self.config = TrainingConfig(
            scorer=kind,
            top_class=top_class,
            max_epochs=epochs,
            pretrain_epochs=method.evaluation_pretrain_epochs(epochs),
            patience=method.evaluation_patience(epochs),
            seed=seed,
            configuration=method.name,
            members=members,
            reference_bugs=tuple(sorted(method.reference_bugs)),
        )
        self._scorer: Scorer | None = None

    def fit(
        self, features: NDArray[np.float64], subclasses: NDArray[np.str_], validation: Validation
    ) -> None:
        trained = train_model(
            features, subclasses, self.names, self.config, progress=False, validation=validation
        )
        bundle = Bundle.from_training(trained, self.config, "eval", self.names, {}, "eval")
        self._scorer = Scorer(bundle, "cpu")

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._scorer is not None
        return self._scorer.score(features.astype(np.float32)).raw.astype(np.float64)

    def member_scores(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        """An ensemble's scores by member: (members, n)."""
        assert self._scorer is not None
        net, preprocessor = self._scorer.net, self._scorer.preprocessor
        if not isinstance(net, Ensemble):
            raise ConfigurationError(f"{self.config.scorer} is not an ensemble")
        with torch.inference_mode():
            x = preprocessor(torch.as_tensor(features, dtype=torch.float32))
            parts = [net.member_scores(chunk) for chunk in x.split(1024)]
        return torch.cat(parts, dim=1).double().numpy()


def make_detector(
    kind: str,
    top_class: str,
    names: tuple[str, ...],
    method: Configuration,
    epochs: int,
    seed: int,
) -> Detector:
    """The unfitted detector of ``kind``, as its hooks make it (models.detectors)."""
    if kind not in DETECTORS + VARIANTS:
        known = ", ".join(DETECTORS + VARIANTS)
        raise ConfigurationError(f"unknown detector {kind!r} (known: {known})")
    spec = get(kind)
    return spec.implementation().evaluate(
        spec, top_class, names, method, epochs, seed, ENSEMBLE_MEMBERS
    )
