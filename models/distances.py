"""The distances of DistClassiPy's ``DistanceAnomaly`` (Chaini et al.), computed on whole batches.

DistClassiPy's classifier keeps, per known class ``c``, a centroid ``m_c`` (the class's median or
mean of each feature) and, when it scales, a dispersion ``s_c`` (the class's standard deviation
with ``ddof=1``, or its inter-quartile range). The distance of a row ``x`` to class ``c`` under
a metric is the metric between ``u = x * w_c`` and ``v = m_c * w_c``, with the weights
``w_c = 1 / max(s_c, eps)`` (``eps`` the float64 machine epsilon; ``w_c = 1`` without scaling).
The library evaluates that pair by pair (a Python function per pair for nine of its sixteen
default metrics, ~390 rows/s); here each metric is one numpy expression over an (rows, classes,
features) block, read from the fitted model's stored centroids and dispersions.

The metrics (sums over the features ``i``; ``|.|`` absolute value):

=============  ==================================================================================
euclidean      ``sqrt(sum (u-v)^2)``
braycurtis     ``sum |u-v| / sum |u+v|``
canberra       ``sum |u-v| / (|u|+|v|)``, a term whose denominator is 0 counting 0
cityblock      ``sum |u-v|``
chebyshev      ``max |u-v|``
clark          ``sqrt(sum (|u-v| / (u+v))^2)``, undefined (NaN) terms left out
correlation    the cosine distance of ``u`` and ``v`` each less its own mean over the features
cosine         ``1 - c``, ``c = sum uv / (sqrt(sum u^2) sqrt(sum v^2))`` clipped to [-1, 1]
hellinger      ``sqrt(2 sum (sqrt(u+) - sqrt(v+))^2)``, ``u+`` = ``u`` with negatives at 0
jaccard        ``1 - sum uv / (sum u^2 + sum v^2 - sum uv)`` (on real values)
lorentzian     ``sum log(|u-v| + 1)``
meehl          ``sum_{i<n-1} (u_i - v_i - u_{i-1} + v_{i-1})^2`` with ``u_{-1} = u_{n-1}``,
               undefined terms left out
motyka         ``sum max(u,v) / sum (u+v)``
soergel        ``sum |u-v| / sum max(u,v)``
wave_hedges    ``sum |u-v| / max(u,v)``, a term counting 0 where ``|u-v|`` or ``max(u,v)`` is 0
kulczynski     ``sum |u-v| / sum min(u,v)``
=============  ==================================================================================

Divisions by zero give what IEEE arithmetic gives (``inf`` or NaN), as in the library; the
operations are in the library's order so that values agree to rounding (tested against it).
Every value depends on its own row only: no matrix products (whose blocking could depend on
the batch), elementwise operations and reductions along the features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.exceptions import BundleError, DataError

Matrix = NDArray[np.float64]
EPSILON: Final = float(np.finfo(np.float64).eps)  # the dispersion's floor
BLOCK_ELEMENTS: Final = 1 << 16  # rows x classes x features per block: a few cache-sized arrays


def _f64(values: Any) -> Matrix:
    return np.asarray(values, dtype=np.float64)


class _Pair:
    """``u`` (rows, classes, features) and ``v`` (1, classes, features) of one block, with the
    intermediate arrays several metrics share computed once."""

    def __init__(self, u: Matrix, v: Matrix) -> None:
        self.u = u
        self.v = v

    @cached_property
    def diff(self) -> Matrix:
        return self.u - self.v

    @cached_property
    def absdiff(self) -> Matrix:
        return np.abs(self.diff)

    @cached_property
    def total(self) -> Matrix:
        return self.u + self.v

    @cached_property
    def larger(self) -> Matrix:
        return np.maximum(self.u, self.v)

    @cached_property
    def sum_absdiff(self) -> Matrix:
        return _f64(self.absdiff.sum(axis=-1))

    @cached_property
    def dots(self) -> tuple[Matrix, Matrix, Matrix]:
        """``sum uv``, ``sum u^2``, ``sum v^2`` (cosine and jaccard)."""
        return (
            _f64((self.u * self.v).sum(axis=-1)),
            _f64(np.square(self.u).sum(axis=-1)),
            _f64(np.square(self.v).sum(axis=-1)),
        )


def _euclidean(p: _Pair) -> Matrix:
    return _f64(np.sqrt(np.square(p.diff).sum(axis=-1)))


def _braycurtis(p: _Pair) -> Matrix:
    return _f64(p.sum_absdiff / np.abs(p.total).sum(axis=-1))


def _canberra(p: _Pair) -> Matrix:
    denominator = np.abs(p.u) + np.abs(p.v)
    return _f64((p.absdiff / (denominator + (denominator == 0.0))).sum(axis=-1))


def _cityblock(p: _Pair) -> Matrix:
    return _f64(p.sum_absdiff)


def _chebyshev(p: _Pair) -> Matrix:
    # a running maximum from 0 that passes over undefined differences, as SciPy's
    return _f64(np.fmax.reduce(p.absdiff, axis=-1, initial=0.0))


def _cosine_of(dots: tuple[Matrix, Matrix, Matrix]) -> Matrix:
    uv, uu, vv = dots
    cosine = uv / (np.sqrt(uu) * np.sqrt(vv))
    cosine = np.where(np.abs(cosine) > 1.0, np.copysign(1.0, cosine), cosine)
    return _f64(1.0 - cosine)


def _cosine(p: _Pair) -> Matrix:
    return _cosine_of(p.dots)


def _correlation(p: _Pair) -> Matrix:
    u = p.u - p.u.mean(axis=-1, keepdims=True)
    v = p.v - p.v.mean(axis=-1, keepdims=True)
    return _cosine_of(_Pair(u, v).dots)


def _clark(p: _Pair) -> Matrix:
    return _f64(np.sqrt(np.nansum(np.square(p.absdiff / p.total), axis=-1)))


def _hellinger(p: _Pair) -> Matrix:
    roots = np.sqrt(np.clip(p.u, 0.0, None)) - np.sqrt(np.clip(p.v, 0.0, None))
    return _f64(np.sqrt(2.0 * np.square(roots).sum(axis=-1)))


def _jaccard(p: _Pair) -> Matrix:
    uv, uu, vv = p.dots
    return _f64(1.0 - uv / (uu + vv - uv))


def _lorentzian(p: _Pair) -> Matrix:
    return _f64(np.log(p.absdiff + 1.0).sum(axis=-1))


def _meehl(p: _Pair) -> Matrix:
    # feature i against feature i-1, the first against the last; the last feature's own term
    # is not counted
    u_before = np.concatenate([p.u[..., -1:], p.u[..., :-2]], axis=-1)
    v_before = np.concatenate([p.v[..., -1:], p.v[..., :-2]], axis=-1)
    terms = p.diff[..., :-1] - u_before + v_before
    return _f64(np.nansum(np.square(terms), axis=-1))


def _motyka(p: _Pair) -> Matrix:
    return _f64(p.larger.sum(axis=-1) / p.total.sum(axis=-1))


def _soergel(p: _Pair) -> Matrix:
    return _f64(p.sum_absdiff / p.larger.sum(axis=-1))


def _wave_hedges(p: _Pair) -> Matrix:
    counted = (p.absdiff != 0.0) & (p.larger != 0.0)
    return _f64(np.where(counted, p.absdiff / p.larger, 0.0).sum(axis=-1))


def _kulczynski(p: _Pair) -> Matrix:
    return _f64(p.sum_absdiff / np.minimum(p.u, p.v).sum(axis=-1))


METRICS: Final[dict[str, Callable[[_Pair], Matrix]]] = {
    "euclidean": _euclidean,
    "braycurtis": _braycurtis,
    "canberra": _canberra,
    "cityblock": _cityblock,
    "chebyshev": _chebyshev,
    "clark": _clark,
    "correlation": _correlation,
    "cosine": _cosine,
    "hellinger": _hellinger,
    "jaccard": _jaccard,
    "lorentzian": _lorentzian,
    "meehl": _meehl,
    "motyka": _motyka,
    "soergel": _soergel,
    "wave_hedges": _wave_hedges,
    "kulczynski": _kulczynski,
}


@dataclass(frozen=True)
class Centroids:
    """The known classes' centroids (classes, features) and the weights that scale them."""

    centres: Matrix
    weights: Matrix

    @classmethod
    def of(cls, classifier: Any) -> Centroids:
        """From a fitted DistClassiPy ``DistanceMetricClassifier`` (``DistanceAnomaly.clf_``):
        its stored centroids and, when it scales, its stored dispersions."""
        try:
            centres = np.asarray(classifier.df_centroid_, dtype=np.float64)
            if not classifier.scale:
                weights = np.ones_like(centres)
            elif classifier.dispersion_stat in ("std", "iqr"):
                stored = getattr(classifier, f"df_{classifier.dispersion_stat}_")
                weights = 1.0 / np.clip(np.asarray(stored, dtype=np.float64), EPSILON, None)
            else:
                raise BundleError(f"unknown dispersion {classifier.dispersion_stat!r}")
        except AttributeError as exc:
            raise BundleError(f"the DistClassiPy classifier is not fitted: {exc}") from exc
        if centres.ndim != 2 or weights.shape != centres.shape:
            raise BundleError("the DistClassiPy centroids and dispersions do not match")
        return cls(centres, weights)

    @property
    def n_features(self) -> int:
        return int(self.centres.shape[1])


def check_metrics(metrics: list[Any]) -> None:
    """A BundleError unless every metric has a vectorised implementation here."""
    unknown = [str(m) for m in metrics if not isinstance(m, str) or m.lower() not in METRICS]
    if unknown:
        raise BundleError(f"no vectorised DistClassiPy metric {', '.join(unknown)}")


def class_distances(x: Matrix, centroids: Centroids, metrics: list[str]) -> list[Matrix]:
    """Per metric, the (rows, classes) distances of the rows of ``x`` to every class centroid.
    Non-finite rows are refused, as DistClassiPy refuses them."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != centroids.n_features:
        raise DataError(
            f"DistClassiPy's centroids have {centroids.n_features} features, got shape {x.shape}"
        )
    if not np.isfinite(x).all():
        raise DataError("DistClassiPy cannot score rows with undefined or infinite values")
    functions = [METRICS[m.lower()] for m in metrics]
    n_classes = centroids.centres.shape[0]
    out = [np.empty((x.shape[0], n_classes)) for _ in functions]
    v = (centroids.centres * centroids.weights)[np.newaxis]
    step = max(1, BLOCK_ELEMENTS // max(1, centroids.centres.size))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, x.shape[0], step):
            rows = slice(start, start + step)
            # C order, the features innermost: every sum is then over one row's contiguous
            # features, in the same order whatever the block's shape
            u = np.multiply(x[rows, np.newaxis, :], centroids.weights, order="C")
            pair = _Pair(u, v)
            for column, function in zip(out, functions, strict=True):
                column[rows] = function(pair)
    return out


def aggregate_classes(table: Matrix, how: str) -> NDArray[np.float64]:
    """Each row's distances to the classes (rows, classes) reduced to one as DistClassiPy's
    ``cluster_agg`` says (``min``, ``median`` or ``mean``), undefined (NaN) distances left out
    and NaN where a row has none defined."""
    if how == "min":
        return np.asarray(np.fmin.reduce(table, axis=1), dtype=np.float64)
    if how not in ("median", "mean"):
        raise BundleError(f"unknown DistClassiPy cluster_agg {how!r}")
    undefined = np.asarray(np.isnan(table).all(axis=1))
    safe = np.where(undefined[:, np.newaxis], 0.0, table)  # no all-NaN warning
    out = np.nanmedian(safe, axis=1) if how == "median" else np.nanmean(safe, axis=1)
    return np.where(undefined, np.nan, out)
