"""The six detectors of the paper's Table 1 and the Rubin tutorial's DistClassiPy behind one
interface: fit on inliers (the neural ones stop early on validation inliers), then score (higher =
more anomalous). Every detector uses the preprocessing, and the neural ones the training method,
of the evaluated configuration (models.configurations): ``paper`` the reference's fixed scales,
``ours`` scales fitted on the training rows."""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from models.bundle import Bundle
from models.configurations import Configuration
from models.exceptions import ConfigurationError
from models.extras import SIM, require
from models.networks import Ensemble
from models.preprocessing import Preprocessor, fit_scaling, paper_scaling
from models.scorers import DETECTORS, VARIANTS
from models.scoring import Scorer
from models.training import ENSEMBLE_MEMBERS, TrainingConfig, train_model

Validation = tuple[NDArray[np.float64], NDArray[np.str_]]

LABELS: Final[dict[str, str]] = {
    "iforest": "Isolation Forest",
    "ocsvm": "One-class SVM",
    "ae": "AE",
    "vae": "VAE",
    "deepsvdd": "Deep SVDD",
    "mcdsvdd": "MCDSVDD",
    "distclassipy": "DistClassiPy",
    "mcdsvdd-nn": "MCDSVDD-NN",
    "mcdsvdd-ens": "MCDSVDD-NN ensemble",
}


class Detector(Protocol):
    def fit(
        self, features: NDArray[np.float64], subclasses: NDArray[np.str_], validation: Validation
    ) -> None: ...

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]: ...


class _Sklearn:
    """Isolation Forest, one-class SVM or DistClassiPy's DistanceAnomaly (the tutorial's settings,
    fitted with the inliers' subclasses as the known classes) on the preprocessed features."""

    def __init__(self, kind: str, names: tuple[str, ...], method: Configuration, seed: int) -> None:
        self.kind, self.names, self.method, self.seed = kind, names, method, seed
        self._preprocessor: Preprocessor | None = None
        self._model: object = None

    def _transform(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._preprocessor is not None
        with torch.no_grad():
            x = self._preprocessor(torch.as_tensor(features, dtype=torch.float32))
        return np.asarray(x.numpy(), dtype=np.float64)

    def fit(
        self, features: NDArray[np.float64], subclasses: NDArray[np.str_], validation: Validation
    ) -> None:
        ensemble = require("sklearn.ensemble", SIM, "the evaluation")
        svm = require("sklearn.svm", SIM, "the evaluation")
        IsolationForest, OneClassSVM = ensemble.IsolationForest, svm.OneClassSVM

        if self.method.preprocessing == "paper":
            scaling = paper_scaling(self.names)
        else:
            scaling = fit_scaling(features, self.names)
        self._preprocessor = Preprocessor(scaling)
        x = self._transform(features)
        if self.kind == "distclassipy":
            from models.estimators import fit_estimator

            self._model = fit_estimator("distclassipy", x, subclasses)
        elif self.kind == "iforest":
            self._model = IsolationForest(
                n_estimators=self.method.iforest_trees,
                max_samples=self.method.iforest_max_samples,
                random_state=self.seed,
            ).fit(x)
        else:
            self._model = OneClassSVM(nu=self.method.ocsvm_nu, gamma="scale").fit(x)

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        x = self._transform(features)
        model = self._model
        if self.kind == "distclassipy":  # higher = more anomalous already
            return model.score(x)[0]  # type: ignore[attr-defined,no-any-return]
        # scikit-learn: higher = more normal; negate so that higher = more anomalous
        if self.kind == "iforest":
            return -np.asarray(model.score_samples(x))  # type: ignore[attr-defined]
        return -np.asarray(model.decision_function(x))  # type: ignore[attr-defined]


NEURAL: Final[tuple[str, ...]] = ("ae", "vae", "deepsvdd", "mcdsvdd", *VARIANTS)


class NeuralDetector:
    """AE, VAE, Deep SVDD, MCDSVDD or our variants, trained by models.training; ``members``:
    the networks of an ensemble (models.scorers.ENSEMBLE_KINDS)."""

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
            scorer=kind,  # type: ignore[arg-type]
            top_class=top_class,
            max_epochs=epochs,
            pretrain_epochs=method.evaluation_pretrain_epochs(epochs),
            patience=method.evaluation_patience(epochs),
            seed=seed,
            configuration=method.name,
            members=members,
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
    if kind in ("iforest", "ocsvm", "distclassipy"):
        return _Sklearn(kind, names, method, seed)
    if kind in NEURAL:
        return NeuralDetector(kind, top_class, names, method, epochs, seed, ENSEMBLE_MEMBERS)
    known = ", ".join(DETECTORS + VARIANTS)
    raise ConfigurationError(f"unknown detector {kind!r} (known: {known})")
