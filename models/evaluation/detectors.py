"""The six detectors of the paper's Table 1 behind one interface: fit on inliers, then score
(higher = more anomalous). All use the paper's feature preprocessing (models.preprocessing)."""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from models.bundle import Bundle
from models.exceptions import ConfigurationError
from models.preprocessing import Preprocessor, fit_scaling
from models.scoring import Scorer
from models.training import TrainingConfig, train_model

DETECTORS: Final[tuple[str, ...]] = ("iforest", "ocsvm", "ae", "vae", "deepsvdd", "mcdsvdd")
LABELS: Final[dict[str, str]] = {
    "iforest": "Isolation Forest",
    "ocsvm": "One-class SVM",
    "ae": "AE",
    "vae": "VAE",
    "deepsvdd": "Deep SVDD",
    "mcdsvdd": "MCDSVDD",
}


class Detector(Protocol):
    def fit(self, features: NDArray[np.float64], subclasses: NDArray[np.str_]) -> None: ...

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]: ...


class _Sklearn:
    """Isolation Forest or one-class SVM on the preprocessed features (undefined -> -1)."""

    def __init__(self, kind: str, names: tuple[str, ...], seed: int) -> None:
        self.kind, self.names, self.seed = kind, names, seed
        self._preprocessor: Preprocessor | None = None
        self._model: object = None

    def _transform(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._preprocessor is not None
        with torch.no_grad():
            x = self._preprocessor(torch.as_tensor(features, dtype=torch.float32))
        return np.asarray(x.numpy(), dtype=np.float64)

    def fit(self, features: NDArray[np.float64], subclasses: NDArray[np.str_]) -> None:
        from sklearn.ensemble import IsolationForest
        from sklearn.svm import OneClassSVM

        self._preprocessor = Preprocessor(fit_scaling(features, self.names))
        x = self._transform(features)
        if self.kind == "iforest":
            self._model = IsolationForest(n_estimators=200, random_state=self.seed).fit(x)
        else:
            self._model = OneClassSVM(nu=0.1, gamma="scale").fit(x)

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        x = self._transform(features)
        model = self._model
        # scikit-learn: higher = more normal; negate so that higher = more anomalous
        if self.kind == "iforest":
            return -np.asarray(model.score_samples(x))  # type: ignore[attr-defined]
        return -np.asarray(model.decision_function(x))  # type: ignore[attr-defined]


class _Neural:
    """AE, VAE, Deep SVDD or MCDSVDD trained with the paper's settings (models.training)."""

    def __init__(
        self, kind: str, top_class: str, names: tuple[str, ...], epochs: int, seed: int
    ) -> None:
        self.names = names
        self.config = TrainingConfig(
            scorer=kind,  # type: ignore[arg-type]
            top_class=top_class,
            max_epochs=epochs,
            pretrain_epochs=max(1, epochs // 3),
            patience=max(10, epochs // 10),
            seed=seed,
        )
        self._scorer: Scorer | None = None

    def fit(self, features: NDArray[np.float64], subclasses: NDArray[np.str_]) -> None:
        trained = train_model(features, subclasses, self.names, self.config, progress=False)
        bundle = Bundle.from_training(trained, self.config, "eval", self.names, {}, "eval")
        self._scorer = Scorer(bundle, "cpu")

    def score(self, features: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self._scorer is not None
        return self._scorer.score(features.astype(np.float32)).raw.astype(np.float64)


def make_detector(
    kind: str, top_class: str, names: tuple[str, ...], epochs: int, seed: int
) -> Detector:
    if kind in ("iforest", "ocsvm"):
        return _Sklearn(kind, names, seed)
    if kind in ("ae", "vae", "deepsvdd", "mcdsvdd"):
        return _Neural(kind, top_class, names, epochs, seed)
    raise ConfigurationError(f"unknown detector {kind!r} (known: {', '.join(DETECTORS)})")
