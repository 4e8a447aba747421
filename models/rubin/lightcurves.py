"""light-curve features of a Rubin alert packet: its difference-flux light curve
(:func:`photometry`: diaSource, prvDiaSources, prvDiaForcedSources) and the ``light-curve``
package's features of it per band, named ``lc_<band>_<feature>``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import numpy as np

from models.extras import RUBIN, require
from models.rubin.diaobject import finite_or_none
from models.rubin.schemas import BANDS

LIGHTCURVE_PREFIX: Final = "lc_"


# light-curve extractors (Malanchev et al. 2021) computed per band on the difference flux (nJy):
# the tutorial's skewness, Stetson index, linear fit and reduced chi2, and common variability
# statistics. Names are light-curve's, prefixed lc_<band>_.
def _extractor() -> Any:
    lc = require("light_curve", RUBIN, "Rubin light-curve features")
    return lc.Extractor(
        lc.Amplitude(),
        lc.BeyondNStd(1.0),
        lc.Cusum(),
        lc.EtaE(),
        lc.ExcessVariance(),
        lc.InterPercentileRange(0.1),
        lc.Kurtosis(),
        lc.LinearFit(),
        lc.MaximumSlope(),
        lc.Mean(),
        lc.ReducedChi2(),
        lc.Skew(),
        lc.StandardDeviation(),
        lc.StetsonK(),
        lc.WeightedMean(),
    )


@cache
def _cached_extractor() -> Any:
    return _extractor()


@cache
def lightcurve_feature_names() -> tuple[str, ...]:
    """``lc_<band>_<name>`` for every band and light-curve feature, in band order."""
    names = tuple(_cached_extractor().names)
    return tuple(f"{LIGHTCURVE_PREFIX}{band}_{name}" for band in BANDS for name in names)


@dataclass(frozen=True)
class Photometry:
    """A packet's difference-flux light curve: time (MJD TAI), band, flux and error (nJy), and
    whether the point is a detection (diaSource) or forced photometry."""

    mjd: np.ndarray
    band: np.ndarray  # band names
    flux: np.ndarray
    flux_err: np.ndarray
    detected: np.ndarray


def _source_values(source: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
    mjd = source.get("midpointMjdTai", source.get("midPointTai"))
    band = source.get("band", source.get("filterName"))
    flux = source.get("psfFlux", source.get("psFlux"))
    err = source.get("psfFluxErr", source.get("psFluxErr"))
    return mjd, band, flux, err


def photometry(alert: Mapping[str, Any]) -> Photometry:
    """The difference-flux light curve of a packet: its diaSource and prvDiaSources
    (detections), and its prvDiaForcedSources at the epochs without a detection in that band;
    points without a finite time, band, flux or positive error are left out; sorted by time."""
    detections: list[Mapping[str, Any]] = []
    if isinstance(alert.get("diaSource"), Mapping):
        detections.append(alert["diaSource"])
    detections += [s for s in alert.get("prvDiaSources") or () if isinstance(s, Mapping)]
    forced = [s for s in alert.get("prvDiaForcedSources") or () if isinstance(s, Mapping)]
    rows: list[tuple[float, str, float, float, bool]] = []
    seen: set[tuple[str, float]] = set()
    for sources, detected in ((detections, True), (forced, False)):
        for source in sources:
            mjd, band, flux, err = _source_values(source)
            t, f, e = finite_or_none(mjd), finite_or_none(flux), finite_or_none(err)
            if t is None or f is None or e is None or e <= 0 or band not in BANDS:
                continue
            key = (str(band), round(t, 5))
            if key in seen:  # forced photometry of an epoch with a detection, or a duplicate
                continue
            seen.add(key)
            rows.append((t, str(band), f, e, detected))
    rows.sort(key=lambda r: (r[0], r[1]))
    return Photometry(
        np.array([r[0] for r in rows], dtype=np.float64),
        np.array([r[1] for r in rows], dtype=object),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([r[3] for r in rows], dtype=np.float64),
        np.array([r[4] for r in rows], dtype=bool),
    )


def lightcurve_features(alert: Mapping[str, Any]) -> dict[str, float | None]:
    """light-curve features of a packet's difference-flux light curve (:func:`photometry`), per
    band: ``lc_<band>_<feature>``; None where a band has too few points for a feature."""
    extractor = _cached_extractor()
    names = tuple(extractor.names)
    lc = photometry(alert)
    out: dict[str, float | None] = {}
    for band in BANDS:
        sel = lc.band == band
        t, f, e = lc.mjd[sel], lc.flux[sel], lc.flux_err[sel]
        if t.size:
            keep = np.concatenate([[True], np.diff(t) > 0])  # strictly increasing times
            t, f, e = t[keep], f[keep], e[keep]
        values: Iterable[float]
        if t.size >= 2:
            values = extractor(t, f, e, sorted=True, check=False, fill_value=np.nan)
        else:
            values = [math.nan] * len(names)
        for name, value in zip(names, values, strict=True):
            out[f"{LIGHTCURVE_PREFIX}{band}_{name}"] = finite_or_none(value)
    return out
