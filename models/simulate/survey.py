"""ZTF-like observing: epochs (cadence, seasons, limiting magnitudes), photometric noise and
detection by difference imaging.

Numbers are those of the ZTF public survey (Bellm et al. 2019, PASP 131, 018002; Masci et al.
2019, PASP 131, 018003): g and r visits every ~2-4 nights, a 5-sigma limiting magnitude near
20.5 (g) and 20.3 (r), saturation near 12.5 mag, and alerts for 5-sigma difference detections.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

BANDS: tuple[str, str] = ("g", "r")  # band index 0 is ZTF fid 1 (g), index 1 is fid 2 (r)
ZTF_START_MJD = 58270.0  # 2018-06-01
ZP_UJY = 23.9  # AB magnitude of 1 microjansky
SATURATION_MAG = 12.5
DETECTION_SNR = 5.0
FORCED_PHOT_DAYS = 30.0  # forced-photometry history in each ZTF alert (fp_hists)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int8]


@dataclass(frozen=True)
class Epochs:
    """Visits of one object: time (MJD), band index and 5-sigma limiting magnitude."""

    mjd: FloatArray
    band: IntArray
    mag_lim: FloatArray

    @property
    def start(self) -> float:
        return float(self.mjd[0]) if self.mjd.size else ZTF_START_MJD

    @property
    def end(self) -> float:
        return float(self.mjd[-1]) if self.mjd.size else ZTF_START_MJD


@dataclass(frozen=True)
class LightCurve:
    """Photometry of one object, sorted by time, in ALeRCE's two units: the corrected (total)
    magnitude with its error (NaN where the total flux is not positive) and the signed difference
    flux in microjansky (``brightness`` of unit ``diff_flux`` in ALeRCE). ``distnr`` is the distance
    (arcsec) to the nearest source of the reference image measured at each epoch."""

    mjd: FloatArray
    band: IntArray
    mag: FloatArray
    mag_err: FloatArray
    diff_flux: FloatArray
    diff_flux_err: FloatArray
    distnr: FloatArray

    def select(self, band: int) -> LightCurve:
        return self.take(self.band == band)

    def take(self, keep: NDArray[np.bool_]) -> LightCurve:
        return LightCurve(
            self.mjd[keep],
            self.band[keep],
            self.mag[keep],
            self.mag_err[keep],
            self.diff_flux[keep],
            self.diff_flux_err[keep],
            self.distnr[keep],
        )

    def __len__(self) -> int:
        return int(self.mjd.size)


@dataclass(frozen=True)
class Observation:
    """What ALeRCE holds for an object: its alert detections and its forced photometry (the
    non-detected epochs that ZTF alerts carry, up to FORCED_PHOT_DAYS before each alert)."""

    detections: LightCurve
    forced: LightCurve


def ztf_epochs(rng: np.random.Generator, start: float, duration: float) -> Epochs:
    """Visits between ``start`` and ``start + duration`` (days) for one field.

    The field is observable for 200-280 nights a year (seasonal gaps), visited every 2-4 nights,
    with 25% of nights lost to weather; a visited night has a g and/or an r exposure ~30 min
    apart at a random time of night.
    """
    nights = np.arange(np.floor(start), np.ceil(start + duration))
    season_length = rng.uniform(200.0, 280.0)
    season_phase = rng.uniform(0.0, 365.25)
    visible = np.mod(nights - season_phase, 365.25) < season_length
    cadence = rng.uniform(2.0, 4.0)
    visited = visible & (rng.random(nights.size) < 0.75 / cadence)
    night = nights[visited]
    n = night.size
    t_g = night + rng.uniform(0.12, 0.45, n)
    t_r = t_g + rng.uniform(0.02, 0.05, n)
    has_g = rng.random(n) < 0.85
    has_r = (rng.random(n) < 0.9) | ~has_g
    mjd = np.concatenate([t_g[has_g], t_r[has_r]])
    band = np.concatenate([np.zeros(has_g.sum(), np.int8), np.ones(has_r.sum(), np.int8)])
    depth = np.where(band == 0, 20.5, 20.3) + rng.normal(0.0, 0.35, mjd.size)
    order = np.argsort(mjd, kind="stable")
    return Epochs(mjd[order], band[order], np.clip(depth, 19.0, 21.3)[order])


def mag_to_ujy(mag: FloatArray | float) -> FloatArray:
    return np.asarray(10.0 ** (-0.4 * (np.asarray(mag) - ZP_UJY)), dtype=np.float64)


def observe(
    rng: np.random.Generator,
    epochs: Epochs,
    true_mag: FloatArray,
    reference_mag: tuple[float | None, float | None],
    reference_offset: float,
) -> Observation:
    """Photometry and detection of a source with magnitudes ``true_mag`` at ``epochs``.

    The difference flux is measured against a reference image holding the source at
    ``reference_mag`` per band (``None``: no source in the reference, as for a supernova).
    Noise: sky-limited (5 sigma at the limiting magnitude) plus source Poisson noise and a 1%
    calibration floor. An epoch is a detection when the difference is significant at 5 sigma and
    the source is not saturated. Forced photometry is kept at the other epochs that lie within
    FORCED_PHOT_DAYS before a detection (ZTF alerts carry that history since 2023). The corrected
    magnitude is that of reference + difference flux, NaN when that is not positive or its error
    reaches 1 mag (ALeRCE drops such magnitudes). ``distnr`` scatters around
    ``reference_offset`` (arcsec) with an astrometric error of 0.07" + 0.7"/SNR per axis.
    """
    flux = mag_to_ujy(true_mag)
    sky = mag_to_ujy(epochs.mag_lim) / DETECTION_SNR
    sigma = np.sqrt(sky**2 + flux * sky / 20.0 + (0.01 * flux) ** 2)
    ref = np.zeros_like(flux)
    for b, ref_mag in enumerate(reference_mag):
        if ref_mag is not None:
            ref[epochs.band == b] = mag_to_ujy(ref_mag)
    diff = flux - ref + rng.normal(0.0, 1.0, flux.size) * sigma
    total = ref + diff
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = ZP_UJY - 2.5 * np.log10(total)
        mag_err = 1.0857 * sigma / total
    usable = (total > 0.0) & (mag_err < 1.0)
    mag = np.where(usable, mag, np.nan)
    mag_err = np.where(usable, mag_err, np.nan)
    detected = (np.abs(diff) >= DETECTION_SNR * sigma) & usable & (mag > SATURATION_MAG)
    astrometry = 0.07 + 0.7 / np.maximum(np.abs(diff) / sigma, 1.0)
    distnr = np.hypot(
        reference_offset + astrometry * rng.normal(0.0, 1.0, flux.size),
        astrometry * rng.normal(0.0, 1.0, flux.size),
    )
    det_mjd = epochs.mjd[detected]
    # non-detected epochs with a detection within the following FORCED_PHOT_DAYS
    forced = np.zeros_like(detected)
    if det_mjd.size:
        nxt = np.minimum(np.searchsorted(det_mjd, epochs.mjd, side="right"), det_mjd.size - 1)
        forced = ~detected & (det_mjd[nxt] > epochs.mjd)
        forced &= det_mjd[nxt] - epochs.mjd <= FORCED_PHOT_DAYS

    def keep(mask: NDArray[np.bool_]) -> LightCurve:
        return LightCurve(
            epochs.mjd[mask], epochs.band[mask], mag[mask], mag_err[mask], diff[mask],
            sigma[mask], distnr[mask],
        )  # fmt: skip

    return Observation(keep(detected), keep(forced))
