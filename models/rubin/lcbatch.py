"""light-curve features of a batch of Rubin alert packets at once: the batch equivalent of
:func:`models.rubin.lightcurves.lightcurve_features`, value for value and bit for bit.

The packets' sources (diaSource, prvDiaSources, prvDiaForcedSources) are one set of flat
columns (:class:`Sources`), gathered from decoded packets (:func:`gather_sources`) or by a batch
decoder straight from the bytes. :func:`lightcurve_matrix` applies :func:`photometry`'s rules to
all of them with numpy - a point needs a finite time, flux and positive error and a known band; a
detection hides the forced photometry (or a duplicate) of its band at the same time rounded to
1e-5 day, the first one seen kept - and extracts every (packet, band) light curve of two points
or more, by the extractor's call on each or by one ``Extractor.many`` call (``light-curve``
documents it as the stack of those calls, with the same ``sorted``/``check``/``fill_value``).

The rounding is Python's ``round(t, 5)`` exactly: ``rint(t * 1e5) / 1e5`` is that double unless
``t * 1e5`` is within the product's rounding error of a half (or too large to round), and those
few points are rounded by Python itself (:func:`_rounded_times`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.rubin.diaobject import finite_or_none
from models.rubin.lightcurves import _cached_extractor, _source_values, lightcurve_feature_names
from models.rubin.schemas import BANDS

# |t * 1e5| below this: the product's rounding error is under 2**-13, so a product farther than
# _MARGIN from a half rounds (half to even) to the integer the exact product rounds to
_EXACT_BELOW: Final = 2.0**40
_MARGIN: Final = 2.0**-12
_BAND_CODE: Final = {band: code for code, band in enumerate(BANDS)}


@dataclass(frozen=True)
class Sources:
    """The photometry of a batch of packets, one row per source: the packet it belongs to,
    time (MJD TAI), band (index in ``BANDS``, -1 for none or another), difference flux and error
    (nJy; NaN where null or not finite) and whether it is a detection. Within a packet, rows are
    in the order :func:`photometry` reads them: diaSource, prvDiaSources, prvDiaForcedSources."""

    packet: NDArray[np.int64]
    mjd: NDArray[np.float64]
    band: NDArray[np.int8]
    flux: NDArray[np.float64]
    flux_err: NDArray[np.float64]
    detected: NDArray[np.bool_]


def _number(value: Any) -> float:
    """``value`` as :func:`finite_or_none` reads it; NaN for None (a float is kept as it is:
    a non-finite one is left out as None is)."""
    if type(value) is float:
        return value
    number = finite_or_none(value)
    return math.nan if number is None else number


def gather_sources(packets: Sequence[Mapping[str, Any]]) -> Sources:
    """The sources of decoded packets (records as fastavro gives them) as flat columns."""
    index: list[int] = []
    mjds: list[float] = []
    bands: list[int] = []
    fluxes: list[float] = []
    errors: list[float] = []
    detections: list[bool] = []
    for at, alert in enumerate(packets):
        found: list[Any] = [alert.get("diaSource")]
        found += alert.get("prvDiaSources") or ()
        for sources, detected in ((found, True), (alert.get("prvDiaForcedSources"), False)):
            for source in sources or ():
                if not isinstance(source, Mapping):
                    continue
                mjd, band, flux, err = _source_values(source)
                index.append(at)
                mjds.append(_number(mjd))
                bands.append(_BAND_CODE.get(band, -1) if isinstance(band, str) else -1)
                fluxes.append(_number(flux))
                errors.append(_number(err))
                detections.append(detected)
    return Sources(
        np.array(index, dtype=np.int64),
        np.array(mjds, dtype=np.float64),
        np.array(bands, dtype=np.int8),
        np.array(fluxes, dtype=np.float64),
        np.array(errors, dtype=np.float64),
        np.array(detections, dtype=bool),
    )


def _rounded_times(t: NDArray[np.float64]) -> NDArray[np.float64]:
    """``round(t, 5)`` of every (finite) time, as Python rounds a float."""
    scaled = t * 1e5
    out = np.rint(scaled) / 1e5
    off_half = np.abs(scaled - np.floor(scaled) - 0.5)
    for k in np.flatnonzero((np.abs(scaled) >= _EXACT_BELOW) | (off_half < _MARGIN)).tolist():
        out[k] = round(float(t[k]), 5)
    return out


def _light_curves(sources: Sources) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    """The rows :func:`photometry` keeps, ordered by packet, band and time (``order``), and
    where each (packet, band) light curve begins in ``order`` (``bounds``, with its end)."""
    s = sources
    valid = (
        np.isfinite(s.mjd) & np.isfinite(s.flux) & np.isfinite(s.flux_err) & (s.flux_err > 0)
    ) & (s.band >= 0)
    rows = np.flatnonzero(valid)
    key = _rounded_times(s.mjd[rows])
    # the first of each (packet, band, rounded time): rows are in reading order
    first = np.lexsort((rows, key, s.band[rows], s.packet[rows]))
    p, b, k = s.packet[rows][first], s.band[rows][first], key[first]
    new = np.ones(len(first), dtype=bool)
    new[1:] = (p[1:] != p[:-1]) | (b[1:] != b[:-1]) | (k[1:] != k[:-1])
    rows = rows[first[new]]
    rows = rows[np.lexsort((s.mjd[rows], s.band[rows], s.packet[rows]))]
    p, b, t = s.packet[rows], s.band[rows], s.mjd[rows]
    begin = np.ones(len(rows), dtype=bool)
    begin[1:] = (p[1:] != p[:-1]) | (b[1:] != b[:-1])
    # strictly increasing times within a light curve (as lightcurve_features keeps them)
    keep = begin.copy()
    keep[1:] |= t[1:] > t[:-1]
    rows, begin = rows[keep], begin[keep]
    bounds = np.append(np.flatnonzero(begin), len(rows)).astype(np.int64)
    return rows, bounds


def lightcurve_matrix(
    sources: Sources, n_packets: int, n_jobs: int | None = None
) -> NDArray[np.float64]:
    """(n_packets, bands x features) light-curve features, in
    :func:`lightcurve_feature_names`' order; NaN where :func:`lightcurve_features` gives None.
    ``n_jobs``: None extracts the light curves one call each in this thread; a number, with one
    ``Extractor.many`` call on that many threads (-1: one per CPU). Both give the same bits; on
    two busy cores ``many`` measured slower (``benchmarks/bench_lightcurves.py``)."""
    extractor = _cached_extractor()
    width = len(extractor.names)
    out = np.full((n_packets, len(BANDS) * width), np.nan)
    rows, bounds = _light_curves(sources)
    t, f, e = sources.mjd[rows], sources.flux[rows], sources.flux_err[rows]
    begins, ends = bounds[:-1], bounds[1:]
    long_enough = np.flatnonzero(ends - begins >= 2)
    if not len(long_enough):
        return out
    spans = zip(begins[long_enough].tolist(), ends[long_enough].tolist(), strict=True)
    curves = [(t[a:z], f[a:z], e[a:z]) for a, z in spans]
    options: dict[str, Any] = {"sorted": True, "check": False, "fill_value": np.nan}
    if n_jobs is None:
        values = np.array([extractor(*curve, **options) for curve in curves], dtype=np.float64)
    else:
        values = extractor.many(curves, n_jobs=n_jobs, **options)
    where = rows[begins[long_enough]]
    packet = sources.packet[where]
    columns = sources.band[where].astype(np.int64)[:, None] * width + np.arange(width)
    out[packet[:, None], columns] = np.where(np.isfinite(values), values, np.nan)
    return out


def lightcurve_feature_rows(
    packets: Sequence[Mapping[str, Any]], n_jobs: int | None = None
) -> list[dict[str, float | None]]:
    """:func:`lightcurve_features` of every packet, computed together (``n_jobs``: as
    :func:`lightcurve_matrix`)."""
    matrix = lightcurve_matrix(gather_sources(packets), len(packets), n_jobs)
    names = lightcurve_feature_names()
    return [
        {n: (None if math.isnan(v) else v) for n, v in zip(names, row, strict=True)}
        for row in matrix.tolist()
    ]
