"""The vectorised DistClassiPy distances (models.distances) against the library itself: on the
shipped LSST bundle and its training sample, every metric's distances to every class, the
scores and the nearest classes equal DistClassiPy's to 1e-9 relative; so do rows of zeros, of
huge and tiny values, a class centroid itself, and a model with a constant feature in a class
(weight 1/eps) and a one-row class (undefined dispersion: NaN distances)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.bundle import load_bundle
from models.distances import METRICS, Centroids, class_distances
from models.estimators import DistanceEstimator
from models.exceptions import BundleError, DataError
from models.preprocessing import preprocess
from models.resources import bundles_dir
from models.table import read_table

pytest.importorskip("distclassipy")

BUNDLE = bundles_dir() / "lsst" / "all-distclassipy"
SAMPLE = Path(__file__).resolve().parents[2] / "models" / "data" / "lsst-sim-sample"
RTOL = 1e-9
# a distance that is 0 in exact arithmetic comes out as 0 or a few ulps of 1 (cosine,
# correlation, clark of a row at a centroid): compared to this absolute tolerance
ATOL = 4 * float(np.finfo(np.float64).eps)


def library_tables(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """DistClassiPy's own (rows, classes) distances per metric: ``predict_and_analyse``."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for metric in model.metrics_:
            model.clf_.predict_and_analyse(x, metric=metric)
            out.append(model.clf_.centroid_dist_df_.to_numpy(dtype=np.float64))
    return out


def library_score(estimator: DistanceEstimator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The scorer as it was before the vectorised distances: the library's tables, aggregated
    over the classes by pandas, then the frozen normalisation and the median."""
    model, norm = estimator.model, estimator.normalisation
    tables = library_tables(model, x)
    columns = [getattr(pd.DataFrame(t), model.cluster_agg)(axis=1).to_numpy() for t in tables]
    distances = np.column_stack(columns)
    distances[distances == np.inf] = 1e9
    distances[distances == -np.inf] = -1e9
    distances = np.where(np.isnan(distances), norm.fill, distances)
    span = norm.maximum - norm.minimum
    distances = (distances - norm.minimum) / np.where(span == 0.0, 1.0, span)
    nearest = tables[list(model.metrics_).index("euclidean")].argmin(axis=1)
    return np.nanmedian(distances, axis=1), nearest


def assert_same(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=what)
    np.testing.assert_array_equal(np.isposinf(ours), np.isposinf(theirs), err_msg=what)
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(theirs), err_msg=what)
    np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL, err_msg=what)


@pytest.fixture(scope="module")
def shipped() -> tuple[DistanceEstimator, np.ndarray]:
    """The shipped bundle's estimator and its training sample, preprocessed as when scored."""
    bundle = load_bundle(BUNDLE)
    assert isinstance(bundle.estimator, DistanceEstimator)
    table = read_table(SAMPLE / "objects.parquet")
    return bundle.estimator, preprocess(bundle.preprocessor, table.columns(bundle.feature_names))


def edge_rows(estimator: DistanceEstimator, base: np.ndarray) -> np.ndarray:
    rows = np.repeat(base[:1], 12, axis=0)
    d = rows.shape[1]
    rows[0] = 0.0
    rows[1, : d // 3] = 0.0
    rows[2] = 1e300
    rows[3, ::2] = -1e300
    rows[4] = np.where(np.arange(d) % 2, 1e308, -1e308)
    rows[5] = 1e-300
    rows[6] = -1.0
    rows[7] = estimator.centroids.centres[0]  # at a centroid: distance 0 to that class
    rows[8] = -estimator.centroids.centres[3]
    rows[9, 3] = 1e200
    rows[10] = estimator.centroids.centres[4] + 1e-12
    return rows


def test_the_bundle_has_the_sixteen_metrics_we_compute(shipped: Any) -> None:
    estimator, _ = shipped
    assert list(estimator.model.metrics_) == list(METRICS)
    assert estimator.centroids.centres.shape == (15, 36)


def test_every_metric_equals_the_library_on_the_shipped_sample(shipped: Any) -> None:
    estimator, x = shipped
    ours = class_distances(x, estimator.centroids, estimator.metrics)
    for metric, mine, theirs in zip(
        estimator.metrics, ours, library_tables(estimator.model, x), strict=True
    ):
        assert mine.shape == (2000, 15)
        assert_same(mine, theirs, metric)


def test_the_metrics_the_library_computes_with_numpy_are_bitwise_its_own(shipped: Any) -> None:
    # its Python metrics sum one row's features with numpy (pairwise summation); ours sum the
    # same values along the contiguous last axis, the same summation (SciPy's compiled metrics
    # sum in sequence and agree to rounding only); a maximum is exact
    exact = {"chebyshev", "clark", "hellinger", "lorentzian", "meehl", "motyka", "soergel"}
    exact |= {"wave_hedges", "kulczynski"}
    estimator, x = shipped
    metrics = [m for m in estimator.metrics if m in exact]
    ours = class_distances(x[:500], estimator.centroids, metrics)
    theirs = library_tables(estimator.model, x[:500])
    for metric, mine in zip(metrics, ours, strict=True):
        np.testing.assert_array_equal(mine, theirs[estimator.metrics.index(metric)], metric)


def test_scores_and_nearest_classes_equal_the_library_on_the_shipped_sample(
    shipped: Any,
) -> None:
    estimator, x = shipped
    raw, nearest = estimator.score(x)
    expected_raw, expected_nearest = library_score(estimator, x)
    np.testing.assert_allclose(raw, expected_raw, rtol=RTOL, atol=0)
    np.testing.assert_array_equal(nearest, expected_nearest)


def test_edge_rows_equal_the_library(shipped: Any) -> None:
    estimator, x = shipped
    rows = edge_rows(estimator, x)
    ours = class_distances(rows, estimator.centroids, estimator.metrics)
    theirs = library_tables(estimator.model, rows)
    undefined = 0
    for metric, mine, lib in zip(estimator.metrics, ours, theirs, strict=True):
        assert_same(mine, lib, metric)
        undefined += int((~np.isfinite(lib)).sum())
    assert undefined > 0  # the rows reach infinite and undefined distances
    raw, nearest = estimator.score(rows)
    expected_raw, expected_nearest = library_score(estimator, rows)
    np.testing.assert_allclose(raw, expected_raw, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(nearest, expected_nearest)
    assert nearest[7] == 0


def test_a_constant_feature_and_a_one_row_class_equal_the_library() -> None:
    from distclassipy.anomaly import DistanceAnomaly

    rng = np.random.default_rng(3)
    x = rng.normal(size=(61, 5))
    labels = np.array(["a"] * 30 + ["b"] * 30 + ["c"])
    x[:30, 2] = 1.0  # class a: dispersion 0, its weight 1/eps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one-row class's dispersion (ddof=1) is NaN
        model = DistanceAnomaly().fit(x, labels)
    centroids = Centroids.of(model.clf_)
    assert np.isnan(centroids.weights[2]).all()
    assert centroids.weights[0, 2] == 1 / np.finfo(np.float64).eps
    rows = np.vstack([rng.normal(size=(6, 5)), np.zeros((1, 5)), np.full((1, 5), 1e300), x[:3]])
    ours = class_distances(rows, centroids, list(model.metrics_))
    undefined = []
    for metric, mine, theirs in zip(model.metrics_, ours, library_tables(model, rows), strict=True):
        assert_same(mine, theirs, metric)
        if np.isnan(theirs[:, 2]).all():
            undefined.append(metric)
    # to the one-row class, most metrics are undefined; those that skip undefined terms (clark,
    # meehl) or keep the running maximum from 0 (chebyshev) give 0 there
    assert len(undefined) == 13


def test_undefined_inputs_are_refused_as_the_library_refuses_them(shipped: Any) -> None:
    estimator, x = shipped
    for bad in (np.nan, np.inf):
        rows = x[:3].copy()
        rows[1, 4] = bad
        with pytest.raises(ValueError, match="contains"):  # scikit-learn's input check
            estimator.model.clf_.predict_and_analyse(rows, metric="euclidean")
        with pytest.raises(DataError, match="undefined or infinite"):
            estimator.score(rows)
    with pytest.raises(DataError, match="36 features"):
        estimator.score(x[:3, :35])


def test_blocks_and_batches_change_nothing_bitwise(shipped: Any) -> None:
    estimator, x = shipped
    rows = np.vstack([x[:300], edge_rows(estimator, x)])
    whole = estimator.score(rows)
    for size in (1, 7, 121, 122, 250):
        parts = [estimator.score(rows[i : i + size]) for i in range(0, len(rows), size)]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole[0])
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole[1])


def test_a_metric_we_do_not_compute_is_refused_at_load(shipped: Any) -> None:
    import copy

    estimator, _ = shipped
    model = copy.deepcopy(estimator.model)
    model.metrics_ = [*model.metrics_, "taneja"]
    with pytest.raises(BundleError, match="taneja"):
        DistanceEstimator(model, estimator.normalisation, estimator.classes)
