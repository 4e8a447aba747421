"""Rubin/LSST-like observing of the simulator's sources: visits, light curves, positions, ids.

Observing (numbers from Ivezić et al. 2019, ApJ 873, 111, Table 1, and the LSST Science
Requirements / Observing Strategy white papers): ugrizy visits of the Wide-Fast-Deep survey, a
field observable for 180-240 nights a year, a visited night every ~3-4 nights (weather included)
with two visits ~15-45 minutes apart in two different bands, bands drawn in the WFD's proportions
of visits (u 56, g 80, r 184, i 184, z 160, y 160 of 825); single-visit 5-sigma depths u 23.9,
g 25.0, r 24.7, i 24.0, z 23.3, y 22.1 (AB, +-0.3 mag per visit), saturation near 16 mag.
Fluxes are in nJy (AB 31.4 mag = 1 nJy). Difference fluxes are measured against a template that
holds the source at its reference brightness (none for transients); a detection (DiaSource) is a
5-sigma difference; forced photometry on the difference images (DiaForcedSource) is kept at every
visit from 30 days before the first detection on, as Rubin's Prompt Processing does.

The sources are :mod:`models.simulate.sources`' generators of the 15 subclasses. Those produce g
and r magnitudes; u follows g and i, z, y follow r, shifted by the subclass's mean colours
(``COLOURS``: approximate SDSS loci, Covey et al. 2007 for stars, Richards et al. 2001 for
quasars, rough peak colours for supernovae; a per-object Gaussian scatter), so variability
amplitudes in u and izy are those of g and r. The generators' brightness ranges were drawn for
ZTF; every LSST object is placed 2-5 mag fainter (a farther population) to fill Rubin's depth.

The alert packets of these light curves are :mod:`models.simulate.lsst_packets`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models import rubin
from models.simulate.sources import GENERATORS, Source
from models.simulate.survey import Epochs, FloatArray

BANDS: Final = rubin.BANDS
DEPTH: Final[dict[str, float]] = {"u": 23.9, "g": 25.0, "r": 24.7, "i": 24.0, "z": 23.3, "y": 22.1}
VISITS: Final[dict[str, int]] = {"u": 56, "g": 80, "r": 184, "i": 184, "z": 160, "y": 160}
SATURATION_MAG: Final = 16.0
NJY_ZP: Final = 31.4  # AB magnitude of 1 nJy
DETECTION_SNR: Final = 5.0
PRECOVERY_DAYS: Final = 30.0
HISTORY_DAYS: Final = 365.0  # prvDiaSources / prvDiaForcedSources reach back a year
LSST_START_MJD: Final = 60950.0  # 2025-10-02
FAINTER: Final = (2.0, 5.0)  # magnitudes added to the ZTF-range sources
_GENERATOR_BAND: Final = np.array([0, 0, 1, 1, 1, 1], dtype=np.int8)  # ugrizy -> g or r
_ID_BASE: Final = 313 * 10**15

# (mean, scatter) of u-g, r-i, i-z, z-y per subclass (approximate; see the module docstring).
Colour = tuple[float, float]
COLOURS: Final[dict[str, tuple[Colour, Colour, Colour, Colour]]] = {
    "SNIa": ((0.4, 0.25), (-0.3, 0.2), (0.0, 0.2), (0.0, 0.2)),
    "SNIbc": ((0.8, 0.3), (0.0, 0.2), (0.1, 0.2), (0.0, 0.2)),
    "SNII": ((0.3, 0.3), (0.0, 0.15), (0.0, 0.15), (0.0, 0.15)),
    "SLSN": ((0.0, 0.2), (-0.1, 0.15), (0.0, 0.15), (0.0, 0.15)),
    "QSO": ((0.2, 0.15), (0.15, 0.1), (0.1, 0.1), (0.1, 0.1)),
    "AGN": ((1.0, 0.3), (0.35, 0.1), (0.2, 0.1), (0.1, 0.1)),
    "Blazar": ((0.5, 0.3), (0.35, 0.15), (0.25, 0.15), (0.2, 0.15)),
    "CV/Nova": ((0.0, 0.3), (0.1, 0.2), (0.0, 0.2), (0.0, 0.2)),
    "YSO": ((1.8, 0.4), (1.0, 0.4), (0.6, 0.2), (0.4, 0.2)),
    "LPV": ((2.8, 0.4), (1.6, 0.4), (0.9, 0.3), (0.5, 0.2)),
    "E": ((1.1, 0.3), (0.2, 0.1), (0.1, 0.07), (0.05, 0.05)),
    "DSCT": ((1.1, 0.1), (0.02, 0.05), (0.0, 0.05), (0.0, 0.05)),
    "RRL": ((1.15, 0.1), (0.05, 0.05), (0.0, 0.05), (0.0, 0.05)),
    "CEP": ((1.5, 0.3), (0.3, 0.1), (0.15, 0.07), (0.1, 0.05)),
    "Periodic-Other": ((1.5, 0.3), (0.3, 0.1), (0.15, 0.07), (0.1, 0.05)),
}


@dataclass(frozen=True)
class LsstEpochs:
    mjd: FloatArray
    band: NDArray[np.int8]  # index into BANDS
    mag_lim: FloatArray


def lsst_epochs(rng: np.random.Generator, start: float, duration: float) -> LsstEpochs:
    """WFD-like visits of one field between ``start`` and ``start + duration`` (days)."""
    nights = np.arange(np.floor(start), np.ceil(start + duration))
    season = rng.uniform(180.0, 240.0)
    phase = rng.uniform(0.0, 365.25)
    visible = np.mod(nights - phase, 365.25) < season
    revisit = rng.uniform(3.0, 4.0)
    night = nights[visible & (rng.random(nights.size) < 1.0 / revisit)]
    n = night.size
    share = np.array([VISITS[b] for b in BANDS], dtype=np.float64)
    share /= share.sum()
    first = rng.choice(len(BANDS), size=n, p=share)
    second = rng.choice(len(BANDS), size=n, p=share)
    second = np.where(second == first, (first + 1) % len(BANDS), second)  # a pair of two bands
    t1 = night + rng.uniform(0.05, 0.35, n)
    t2 = t1 + rng.uniform(15.0, 45.0, n) / 1440.0
    mjd = np.concatenate([t1, t2])
    band = np.concatenate([first, second]).astype(np.int8)
    depth = np.array([DEPTH[b] for b in BANDS])[band] + rng.normal(0.0, 0.3, mjd.size)
    order = np.argsort(mjd, kind="stable")
    return LsstEpochs(mjd[order], band[order], depth[order])


def mag_to_njy(mag: FloatArray | float) -> FloatArray:
    return np.asarray(10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - NJY_ZP)))


@dataclass(frozen=True)
class LsstLightCurve:
    """Every visit from PRECOVERY_DAYS before the first detection to the alert (the last
    detection): difference flux (psfFlux, forced on the difference image where not detected) and
    direct-image flux (scienceFlux), nJy, with errors."""

    mjd: FloatArray
    band: NDArray[np.int8]
    diff: FloatArray
    diff_err: FloatArray
    science: FloatArray
    science_err: FloatArray
    detected: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.mjd.size)


def _lsst_magnitudes(
    rng: np.random.Generator, epochs: LsstEpochs, subclass: str, source_of: Any
) -> tuple[FloatArray, dict[int, float | None], Source]:
    """True magnitudes in every band at the visits, reference magnitudes per band, the source."""
    generator_epochs = Epochs(epochs.mjd, _GENERATOR_BAND[epochs.band], epochs.mag_lim)
    source: Source = source_of(rng, generator_epochs)
    ug, ri, iz, zy = (rng.normal(m, s) for m, s in COLOURS[subclass])
    offset = np.array([ug, 0.0, 0.0, -ri, -ri - iz, -ri - iz - zy]) + rng.uniform(*FAINTER)
    mag = source.mag + offset[epochs.band]
    refs: dict[int, float | None] = {}
    for b in range(len(BANDS)):
        base = source.reference[int(_GENERATOR_BAND[b])]
        refs[b] = None if base is None else float(base + offset[b])
    return mag, refs, source


def observe_lsst(
    rng: np.random.Generator, epochs: LsstEpochs, mag: FloatArray, refs: dict[int, float | None]
) -> LsstLightCurve | None:
    """Photometry at every visit; None when nothing is detected."""
    flux = mag_to_njy(mag)
    sky = mag_to_njy(epochs.mag_lim) / DETECTION_SNR
    sigma = np.sqrt(sky**2 + flux * sky / 20.0 + (0.005 * flux) ** 2)
    ref_flux = [0.0 if m is None else float(mag_to_njy(m)) for m in (refs[b] for b in range(6))]
    ref = np.asarray(ref_flux)[epochs.band]
    diff = flux - ref + rng.normal(0.0, 1.0, flux.size) * sigma
    science_err = np.sqrt(sky**2 + flux * sky / 20.0 + (0.005 * flux) ** 2)
    science = flux + rng.normal(0.0, 1.0, flux.size) * science_err
    detected = (np.abs(diff) >= DETECTION_SNR * sigma) & (mag > SATURATION_MAG)
    if not detected.any():
        return None
    first = epochs.mjd[detected][0]
    last = int(np.flatnonzero(detected)[-1])
    keep = epochs.mjd >= first - PRECOVERY_DAYS
    keep[last + 1 :] = False
    return LsstLightCurve(
        epochs.mjd[keep], epochs.band[keep], diff[keep], sigma[keep], science[keep],
        science_err[keep], detected[keep],
    )  # fmt: skip


def simulate_lightcurve(
    subclass: str, rng: np.random.Generator, min_detections: int, max_attempts: int = 500
) -> tuple[LsstLightCurve, Source]:
    """Draw an object of ``subclass`` until it has ``min_detections`` detections in a band."""
    generator = GENERATORS[subclass]
    for _ in range(max_attempts):
        start = rng.uniform(LSST_START_MJD, LSST_START_MJD + 1000.0)
        duration = 10.0 ** rng.uniform(np.log10(60.0), np.log10(1400.0))
        epochs = lsst_epochs(rng, start, duration)
        if epochs.mjd.size < min_detections:
            continue
        mag, refs, source = _lsst_magnitudes(rng, epochs, subclass, generator)
        curve = observe_lsst(rng, epochs, mag, refs)
        if curve is None:
            continue
        counts = np.bincount(curve.band[curve.detected], minlength=len(BANDS))
        if counts.max() >= min_detections:
            return curve, source
    raise ValueError(f"no {subclass} object with {min_detections} detections")


def sky_position(rng: np.random.Generator, context: Mapping[str, float]) -> tuple[float, float]:
    """(ra, dec): the source's drawn position reflected through the equator (dec -> -dec),
    redrawn uniformly in Rubin's footprint (-70 < dec < 12.5) when the reflection falls out."""
    ra, dec = float(context["ra"]), -float(context["dec"])
    if -70.0 < dec < 12.5:
        return ra, dec
    return float(rng.uniform(0.0, 360.0)), float(
        np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-70.0)), np.sin(np.radians(12.5)))))
    )


def dia_object_id(seed: int, index: int) -> int:
    """A 64-bit diaObjectId, unique within a data set (seed and index)."""
    return _ID_BASE + (seed % 10**6) * 10**8 + index


def iter_curves(
    curves: Mapping[str, LsstLightCurve], positions: Mapping[str, tuple[float, float]]
) -> Iterator[tuple[int, LsstLightCurve, float, float]]:
    for oid, curve in curves.items():
        ra, dec = positions[oid]
        yield int(oid), curve, ra, dec
