"""The Rubin anomaly-detection tutorial's detectors as bundle kinds (Chaini, Plazas Malagón, Lau &
Acero Cuellar, Rubin Community Workshop 2025): an Isolation Forest and DistClassiPy's
``DistanceAnomaly``, with the tutorial's settings (:data:`IFOREST_SETTINGS`,
:data:`DISTCLASSIPY_SETTINGS`), fitted on the bundle's preprocessed features.

Raw scores are oriented like every other scorer's: higher = more anomalous. The Isolation
Forest's is ``-score_samples`` (the tutorial ranks by the lowest ``score_samples``);
DistanceAnomaly's is its ``decision_function`` (the tutorial ranks by the lowest
``-decision_function``).

One departure, so that a score does not depend on the other alerts of its batch: with
``normalize_scores=True`` DistClassiPy min-max scales each metric's distances over the rows being
scored (and fills undefined distances with their mean over those rows). Here the minimum,
maximum and mean of each metric are those of the training rows, frozen at fit time (on them the
scores are DistClassiPy's own ``decision_function``, tested; on new rows values outside [0, 1]
are possible), and a metric spanning only rounding is constant (:data:`ROUNDING`). The nearest
known subclass is the class DistClassiPy's classifier predicts with the Euclidean metric
(distance to the class centroid scaled by the class's dispersion). DistClassiPy fits the model
(its centroids and dispersions); the distances are computed on whole batches from them by
:mod:`models.distances` (our implementation of the same definitions, tested equal to DistClassiPy's
own to 1e-9 relative), not metric by metric and pair by pair as the library does (~390 rows/s).

Storage: the fitted scikit-learn / DistClassiPy estimator is pickled and xz-compressed
(``model.pkl.xz``, ~0.4 MB for 100 trees), its SHA-256 checked against the manifest before it is
decompressed and unpickled; the manifest records the libraries' versions. Both run on the CPU.
"""

from __future__ import annotations

import lzma
import pickle
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar, Final, Protocol, cast

import numpy as np
from numpy.typing import NDArray

from models.detectors import REGISTRY, kinds
from models.distances import Centroids, aggregate_classes, check_metrics, class_distances
from models.exceptions import BundleError, ConfigurationError
from models.extras import DISTCLASSIPY, RUBIN, available, require

ESTIMATOR_FILE: Final = "model.pkl.xz"
DISTCLASSIPY_EXTRA: Final = DISTCLASSIPY
# scikit-learn, which the Isolation Forest needs, comes with the 'rubin' extra (the iforest is
# the default LSST scorer), and with 'sim' and 'distclassipy'.
IFOREST_EXTRA: Final = RUBIN
# The tutorial's settings: IsolationForest(max_samples=500, random_state=RandomState(42)) (the
# seed is recorded here as 42) and
# DistanceAnomaly(cluster_agg="min", metric_agg="median", normalize_scores=True); everything else
# is the libraries' default.
IFOREST_SETTINGS: Final[dict[str, Any]] = {"max_samples": 500, "random_state": 42}
DISTCLASSIPY_SETTINGS: Final[dict[str, Any]] = {
    "cluster_agg": "min",
    "metric_agg": "median",
    "normalize_scores": True,
}
_INFINITY: Final = 1e9  # DistClassiPy's stand-in for infinite distances
# A metric spanning at most this share of its size is constant, as an exactly constant one is for
# DistClassiPy: scaling it would score the last bits of the arithmetic (the correlation metric is
# 0..7e-16 on every row when a known class has a constant feature, weighted 1/eps).
ROUNDING: Final = 1e-12
NEAREST_METRIC: Final = "euclidean"

Matrix = NDArray[np.float64]


class Estimator(Protocol):
    """A fitted detector: raw scores (higher = more anomalous) and the nearest centre's index."""

    kind: str

    def score(self, x: Matrix) -> tuple[NDArray[np.float64], NDArray[np.int64]]: ...

    def state(self) -> dict[str, Any]: ...

    def dumps(self) -> bytes: ...


def distance_anomaly_class() -> Any:
    """DistClassiPy's DistanceAnomaly, or a MissingExtraError naming the extra (GPL-3.0)."""
    anomaly = require("distclassipy.anomaly", DISTCLASSIPY_EXTRA, "the distclassipy scorer")
    return anomaly.DistanceAnomaly


def distclassipy_available() -> bool:
    """Whether the 'distclassipy' extra is installed."""
    return available("distclassipy.anomaly")


def isolation_forest_class() -> Any:
    """scikit-learn's IsolationForest, or a MissingExtraError naming the extra."""
    return require("sklearn.ensemble", IFOREST_EXTRA, "the iforest scorer").IsolationForest


def _library_versions(*names: str) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def iforest(max_samples: int | str = 500, random_state: int = 42, n_estimators: int = 100) -> Any:
    """An unfitted Isolation Forest (the tutorial's by default). As in the tutorial, the seed
    is given as a ``numpy.random.RandomState``: scikit-learn draws the subsamples from the same
    stream as the forest's seeds, so ``random_state=42`` would grow other trees."""
    return isolation_forest_class()(
        n_estimators=n_estimators,
        max_samples=max_samples,
        random_state=np.random.RandomState(random_state),
    )


class IForestEstimator:
    """scikit-learn's IsolationForest; raw score ``-score_samples``; no centres (index 0)."""

    kind = "iforest"
    settings: ClassVar[dict[str, Any]] = IFOREST_SETTINGS
    known_classes: ClassVar[str | None] = None

    def __init__(self, model: Any) -> None:
        self.model = model

    require = staticmethod(isolation_forest_class)  # a MissingExtraError without the extra

    @classmethod
    def restore(cls, model: Any, state: dict[str, Any]) -> IForestEstimator:
        return cls(model)

    @classmethod
    def fit(cls, x: Matrix, subclasses: NDArray[np.str_]) -> IForestEstimator:
        return cls(iforest(**IFOREST_SETTINGS).fit(x))

    def score(self, x: Matrix) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        raw = -np.asarray(self.model.score_samples(x), dtype=np.float64)
        return raw, np.zeros(raw.shape[0], dtype=np.int64)

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "settings": {
                **IFOREST_SETTINGS,
                "random_state": f"RandomState({IFOREST_SETTINGS['random_state']})",
                "n_estimators": int(self.model.n_estimators),
            },
            "libraries": _library_versions("scikit-learn"),
        }

    def dumps(self) -> bytes:
        return _compress(self.model)


@dataclass
class _Normalisation:
    """Per-metric minimum, maximum and mean of the training rows' distances."""

    minimum: NDArray[np.float64]
    maximum: NDArray[np.float64]
    fill: NDArray[np.float64]


class DistanceEstimator:
    """DistClassiPy's DistanceAnomaly with its per-metric normalisation frozen at fit time."""

    kind = "distclassipy"
    settings: ClassVar[dict[str, Any]] = DISTCLASSIPY_SETTINGS
    known_classes: ClassVar[str | None] = "subclasses"

    def __init__(self, model: Any, normalisation: _Normalisation, classes: tuple[str, ...]) -> None:
        check_metrics(list(model.metrics_))
        self.model = model
        self.normalisation = normalisation
        self.classes = classes
        self.centroids = Centroids.of(model.clf_)  # what the distances are computed from

    require = staticmethod(distance_anomaly_class)

    @classmethod
    def restore(cls, model: Any, state: dict[str, Any]) -> DistanceEstimator:
        """With the normalisation and classes of the manifest's ``state``."""
        try:
            norm = state["normalisation"]
            normalisation = _Normalisation(
                np.asarray(norm["minimum"], dtype=np.float64),
                np.asarray(norm["maximum"], dtype=np.float64),
                np.asarray(norm["fill"], dtype=np.float64),
            )
            classes = tuple(str(c) for c in state["classes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"malformed distclassipy state in the manifest: {exc}") from exc
        n_metrics = len(model.metrics_)
        if any(len(v) != n_metrics for v in (normalisation.minimum, normalisation.maximum)):
            raise BundleError("the distclassipy normalisation does not match its metrics")
        return cls(model, normalisation, classes)

    @classmethod
    def fit(cls, x: Matrix, subclasses: NDArray[np.str_]) -> DistanceEstimator:
        model = distance_anomaly_class()(**DISTCLASSIPY_SETTINGS).fit(x, subclasses)
        classes = tuple(str(c) for c in model.clf_.classes_)
        estimator = cls(model, _Normalisation(np.zeros(0), np.zeros(0), np.zeros(0)), classes)
        distances, _ = estimator.metric_distances(x)
        fill = np.nanmean(distances, axis=0)
        filled = np.where(np.isnan(distances), fill, distances)
        estimator.normalisation = _Normalisation(filled.min(axis=0), filled.max(axis=0), fill)
        return estimator

    @property
    def metrics(self) -> list[Any]:
        return list(self.model.metrics_)

    def metric_distances(self, x: Matrix) -> tuple[Matrix, NDArray[np.int64]]:
        """(n, n_metrics) distance to the known classes, aggregated over classes as
        ``cluster_agg`` says, infinities at +-1e9 (as DistClassiPy); and the index of the
        class nearest by the Euclidean metric. Computed on the whole batch from the fitted
        model's centroids and dispersions (models.distances), as DistClassiPy's
        ``predict_and_analyse`` computes them metric by metric."""
        tables = class_distances(x, self.centroids, self.metrics)
        aggregate = self.model.cluster_agg
        distances = np.column_stack([aggregate_classes(table, aggregate) for table in tables])
        nearest = np.zeros(distances.shape[0], dtype=np.int64)
        for metric, table in zip(self.metrics, tables, strict=True):
            if metric == NEAREST_METRIC:
                nearest = np.asarray(table.argmin(axis=1), dtype=np.int64)
        distances[distances == np.inf] = _INFINITY
        distances[distances == -np.inf] = -_INFINITY
        return distances, nearest

    def score(self, x: Matrix) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        distances, nearest = self.metric_distances(x)
        norm = self.normalisation
        distances = np.where(np.isnan(distances), norm.fill, distances)
        if self.model.normalize_scores:
            span = norm.maximum - norm.minimum
            size = np.maximum(1.0, np.maximum(np.abs(norm.minimum), np.abs(norm.maximum)))
            distances = (distances - norm.minimum) / np.where(span <= ROUNDING * size, 1.0, span)
        aggregate = self.model.metric_agg
        if aggregate == "median":
            raw = np.nanmedian(distances, axis=1)
        elif aggregate == "mean":
            raw = np.nanmean(distances, axis=1)
        elif aggregate == "min":
            raw = np.nanmin(distances, axis=1)
        else:
            raw = np.nanquantile(distances, 0.25, axis=1)
        return np.asarray(raw, dtype=np.float64), nearest

    def state(self) -> dict[str, Any]:
        norm = self.normalisation
        return {
            "kind": self.kind,
            "settings": dict(DISTCLASSIPY_SETTINGS),
            "metrics": [str(m) for m in self.metrics],
            "classes": list(self.classes),
            "normalisation": {k: getattr(norm, k).tolist() for k in ("minimum", "maximum", "fill")},
            "libraries": _library_versions("distclassipy", "scikit-learn", "scipy"),
        }

    def dumps(self) -> bytes:
        if hasattr(self.model.clf_, "centroid_dist_df_"):
            del self.model.clf_.centroid_dist_df_  # the last batch's distances: not model state
        return _compress(self.model)


def _compress(model: Any) -> bytes:
    return lzma.compress(pickle.dumps(model, protocol=5), preset=9)


def _estimator_class(kind: str) -> Any:
    """The class of an estimator kind (its hooks in the registry, models.detectors), or None."""
    spec = REGISTRY.get(kind)
    return getattr(spec.implementation(), "estimator", None) if spec is not None else None


def fit_estimator(kind: str, x: Matrix, subclasses: NDArray[np.str_]) -> Estimator:
    """Fit the tutorial's detector ``kind`` on preprocessed inliers (and their subclasses: the
    known classes of DistanceAnomaly)."""
    estimator = _estimator_class(kind)
    if estimator is None:
        known = ", ".join(kinds(family="estimator"))
        raise ConfigurationError(f"{kind!r} is not an estimator kind ({known})")
    return cast("Estimator", estimator.fit(x, subclasses))


def load_estimator(kind: str, data: bytes, state: dict[str, Any]) -> Estimator:
    """Unpickle a bundle's estimator (its checksum already verified) and restore its state."""
    estimator = _estimator_class(kind)
    if estimator is None:
        raise BundleError(f"{kind!r} is not an estimator kind")
    # A clear error without the extra, rather than unpickling's "No module named ...".
    estimator.require()
    try:
        model = pickle.loads(lzma.decompress(data))
    except Exception as exc:  # unpickling raises whatever the pickled classes raise
        raise BundleError(f"cannot unpickle the {kind} estimator: {exc}") from exc
    return cast("Estimator", estimator.restore(model, state))
