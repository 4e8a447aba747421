"""The hooks of the estimator kinds (iforest, distclassipy: models.estimators, stored pickled) and
of the baseline evaluated only (ocsvm). Nothing here imports torch at import time."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from models.detectors.spec import DetectorSpec, Validation
from models.estimators import DistanceEstimator, Estimator, IForestEstimator, fit_estimator
from models.exceptions import ConfigurationError
from models.extras import SIM, available, require

if TYPE_CHECKING:
    import torch

    from models.bundle import Bundle, Manifest
    from models.configurations import Configuration
    from models.evaluation.detectors import Detector
    from models.networks import Network
    from models.preprocessing import FeatureScaling
    from models.training import TrainedModel, TrainingConfig

Matrix = NDArray[np.float64]
# How the evaluation fits a kind on preprocessed inliers: (x, subclasses, configuration, seed)
# -> the fitted model's scores of new rows (higher = more anomalous).
EvaluationFit = Callable[
    [Matrix, NDArray[np.str_], "Configuration", int], Callable[[Matrix], NDArray[np.float64]]
]


def _iforest(
    x: Matrix, subclasses: NDArray[np.str_], method: Configuration, seed: int
) -> Callable[[Matrix], NDArray[np.float64]]:
    """The configuration's Isolation Forest (not the tutorial's: the paper's evaluation)."""
    model = (
        require("sklearn.ensemble", SIM, "the evaluation")
        .IsolationForest(
            n_estimators=method.iforest_trees,
            max_samples=method.iforest_max_samples,
            random_state=seed,
        )
        .fit(x)
    )
    # scikit-learn: higher = more normal; negated so that higher = more anomalous
    return lambda rows: -np.asarray(model.score_samples(rows))


def _distclassipy(
    x: Matrix, subclasses: NDArray[np.str_], method: Configuration, seed: int
) -> Callable[[Matrix], NDArray[np.float64]]:
    """The tutorial's DistanceAnomaly, the inliers' subclasses its known classes."""
    model = fit_estimator("distclassipy", x, subclasses)
    return lambda rows: model.score(rows)[0]  # higher = more anomalous already


def _ocsvm(
    x: Matrix, subclasses: NDArray[np.str_], method: Configuration, seed: int
) -> Callable[[Matrix], NDArray[np.float64]]:
    """The configuration's one-class SVM."""
    svm = require("sklearn.svm", SIM, "the evaluation")
    model = svm.OneClassSVM(nu=method.ocsvm_nu, gamma="scale").fit(x)
    return lambda rows: -np.asarray(model.decision_function(rows))


class EstimatorClass(Protocol):
    """An estimator kind's class: how it is fitted, restored from a bundle and what it needs."""

    settings: dict[str, Any]  # the tutorial's settings, recorded in the manifest
    known_classes: str | None  # what its known classes are ("subclasses"), if it has any

    def fit(self, x: Matrix, subclasses: NDArray[np.str_]) -> Estimator: ...

    def restore(self, model: Any, state: dict[str, Any]) -> Estimator: ...

    def require(self) -> None: ...


class BaselineHooks:
    """A detector of the evaluation only: no network, no training, no bundle."""

    def __init__(self, evaluation: EvaluationFit) -> None:
        self.evaluation = evaluation

    def _no_bundle(self, spec: DetectorSpec) -> ConfigurationError:
        return ConfigurationError(f"{spec.name} is evaluated only: it has no bundle format")

    def require(self, spec: DetectorSpec) -> None:
        """Nothing beyond the evaluation's extra."""

    def unavailable(self, spec: DetectorSpec) -> str | None:
        return None

    def build(
        self,
        spec: DetectorSpec,
        n_features: int,
        latent: int,
        n_centres: int,
        state: dict[str, torch.Tensor] | None = None,
    ) -> Network:
        raise ConfigurationError(f"{spec.name} has no network")

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
        raise self._no_bundle(spec)

    def hyperparameters(self, spec: DetectorSpec, config: TrainingConfig) -> dict[str, Any]:
        raise self._no_bundle(spec)

    def describe(self, spec: DetectorSpec, metrics: dict[str, Any]) -> str:
        raise self._no_bundle(spec)

    def load(self, spec: DetectorSpec, manifest: Manifest, weights: Path) -> Bundle:
        raise self._no_bundle(spec)

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
        from models.evaluation.detectors import FeatureDetector

        return FeatureDetector(names, method, seed, self.evaluation)


class EstimatorHooks(BaselineHooks):
    """A kind whose bundle holds a fitted estimator of ``estimator``'s class, pickled."""

    def __init__(
        self,
        estimator: EstimatorClass,
        evaluation: EvaluationFit,
        extra: tuple[str, str] = ("", ""),
    ) -> None:
        super().__init__(evaluation)
        self.estimator = estimator
        # an optional extra the evaluation skips it without: (its module, the note's reason)
        self.module, self.missing = extra

    def require(self, spec: DetectorSpec) -> None:
        self.estimator.require()

    def unavailable(self, spec: DetectorSpec) -> str | None:
        return self.missing if self.module and not available(self.module) else None

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
        """Fit on the preprocessed fitted rows; calibrate on their scores."""
        from models.preprocessing import preprocess
        from models.training import TrainedModel, calibration_scores, split_inliers

        inliers = split_inliers(features, subclasses, feature_names, config, validation, scaling)
        preprocessor, names = inliers.preprocessor, inliers.names
        x_fit, y_fit = preprocess(preprocessor, inliers.x_fit), inliers.y_fit
        estimator = self.estimator.fit(x_fit, y_fit)
        train_scores = estimator.score(x_fit)[0].astype(np.float32).astype(np.float64)
        val_scores = estimator.score(preprocess(preprocessor, inliers.x_held))[0]
        val_scores = val_scores.astype(np.float32)
        metrics: dict[str, Any] = {
            "n_train": int(x_fit.shape[0]),
            "n_validation": int(inliers.x_held.shape[0]),
            "subclass_counts": {s: int((y_fit == s).sum()) for s in names},
            "validation_score_median": float(np.median(val_scores)),
            "train_score_median": float(np.median(train_scores)),
            "seconds": round(time.perf_counter() - inliers.started, 2),
        }
        centre_names: tuple[str, ...] = tuple(getattr(estimator, "classes", ()))
        calibration = calibration_scores(train_scores)
        return TrainedModel(None, preprocessor, centre_names, calibration, metrics, estimator)

    def hyperparameters(self, spec: DetectorSpec, config: TrainingConfig) -> dict[str, Any]:
        return {
            "configuration": config.configuration,
            "scorer": config.scorer,
            "top_class": config.top_class,
            "preprocessing": config.method.preprocessing,
            "settings": dict(self.estimator.settings),
            "known_classes": self.estimator.known_classes,
        }

    def describe(self, spec: DetectorSpec, metrics: dict[str, Any]) -> str:
        return f"fitted on {metrics['n_train']} objects"

    def load(self, spec: DetectorSpec, manifest: Manifest, weights: Path) -> Bundle:
        """Unpickled from the very bytes whose checksum was verified."""
        from models.bundle import Bundle, check_digest
        from models.estimators import load_estimator
        from models.preprocessing import Preprocessor

        data = weights.read_bytes()
        check_digest(weights, hashlib.sha256(data).hexdigest(), manifest)
        estimator = load_estimator(spec.name, data, manifest.estimator)
        preprocessor = Preprocessor.from_manifest(manifest.preprocessing)
        return Bundle(manifest, None, preprocessor, estimator)


IFOREST = EstimatorHooks(IForestEstimator, _iforest)
DISTCLASSIPY = EstimatorHooks(
    DistanceEstimator,
    _distclassipy,
    extra=(
        "distclassipy.anomaly",
        "it needs the 'distclassipy' extra (pip install 'alert-anomaly[distclassipy]', GPL-3.0)",
    ),
)
OCSVM = BaselineHooks(_ocsvm)
