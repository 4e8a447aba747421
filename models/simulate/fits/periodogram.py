"""ALeRCE's period features restated: the densest-window trim, the multiband Lomb-Scargle period
search (:func:`periods`) and the 7-harmonic series fit at the period (:func:`harmonics`)."""

from __future__ import annotations

from functools import cache
from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.extras import SIM, require
from models.simulate.survey import FloatArray

lc = require("light_curve", SIM, "simulated ZTF features")

NAN: Final = float("nan")

# --- Periodogram ------------------------------------------------------------------------------
SMALLEST_PERIOD: Final = 0.045  # days (ALeRCE's ZTF period search range)
LARGEST_PERIOD: Final = 100.0
TRIM_DAYS: Final = 1000.0  # the period search uses the densest 1000-day stretch
PERIOD_MIN_LENGTH: Final = 15  # observations per band (and in total) for a period search
POWER_RATE_FACTORS: Final = (0.25, 1 / 3, 0.5, 2.0, 3.0, 4.0)
_MAX_GRID_POWER: Final = 15  # at most 2**15 + 1 frequencies on the FFT grid
_CANDIDATES: Final = 5  # periodogram peaks refined on a fine grid
_FINE_POINTS: Final = 21


def densest_window(t: FloatArray, days: float = TRIM_DAYS) -> slice:
    """The longest run of sorted times ``t`` spanning less than ``days`` (the first if tied)."""
    best, start = (0, 0), 0
    for end in range(t.size):
        while t[end] - t[start] >= days:
            start += 1
        if end - start > best[1] - best[0]:
            best = (start, end)
    return slice(best[0], best[1] + 1)


@cache
def _coarse_grid(baseline_bucket: int) -> FloatArray:
    """Angular frequencies linspace(0, f_max, 2**k + 1) for the FFT periodogram, spaced by about
    2 pi / baseline for a baseline of 2**baseline_bucket days (at most 2**15 + 1 points)."""
    f_max = 2.0 * np.pi / SMALLEST_PERIOD
    step = 2.0 * np.pi / 2.0**baseline_bucket
    k = int(np.clip(np.ceil(np.log2(f_max / step)), 10, _MAX_GRID_POWER))
    return np.linspace(0.0, f_max, 2**k + 1)


def _power(
    t: FloatArray, m: FloatArray, err: FloatArray, band: NDArray[np.int8] | None, freqs: FloatArray
) -> FloatArray:
    """Lomb-Scargle power on ``freqs`` (multiband, chi2-weighted, when ``band`` is given)."""
    fast = freqs[0] == 0.0
    if band is None:
        _, power = lc.Periodogram(freqs=freqs, fast=fast).freq_power(t, m)
    else:
        pg = lc.Periodogram(freqs=freqs, fast=fast, bands=["g", "r"])
        _, power = pg.freq_power(t, m, err, band=np.where(band == 0, "g", "r"))
    return np.asarray(power, dtype=np.float64)


def _peaks(power: FloatArray, n: int) -> FloatArray:
    """Indices of the ``n`` highest local maxima."""
    inner = (
        np.flatnonzero((power[1:-1] >= power[:-2]) & (power[1:-1] >= power[2:]) & (power[1:-1] > 0))
        + 1
    )
    return np.asarray(inner[np.argsort(power[inner])[::-1][:n]])


def periods(
    t: FloatArray, m: FloatArray, err: FloatArray, band: NDArray[np.int8]
) -> tuple[float, float, dict[int, float], tuple[float, ...]]:
    """ALeRCE's period features of sorted magnitudes in bands 0/1: the multiband period, its
    significance PPE (one minus the normalised entropy of the 100 highest periodogram values,
    each + 0.01), the best period of each band and the power rates (periodogram at the period
    times each factor over the peak). Bands with fewer than 15 points are left out, and nothing
    is computed with fewer than 15 in total.

    ALeRCE searches 0.045-100 d with P4J's multi-harmonic AOV periodogram and fine-tunes its 10
    best local optima; here the light-curve package's Lomb-Scargle periodogram (multiband,
    chi2-weighted bands) on an FFT grid spaced by 1 / baseline, whose 5 highest peaks are
    refined on a 21-point grid each; each band's period is the best of those fine frequencies in
    that band's (unweighted) periodogram. Periods agree; PPE and power rates are on light-curve's
    Lomb-Scargle power scale ('psd' normalisation) instead of AOV's.
    """
    nan_result: tuple[float, float, dict[int, float], tuple[float, ...]] = (
        NAN,
        NAN,
        {},
        tuple(NAN for _ in POWER_RATE_FACTORS),
    )
    useful = [b for b in (0, 1) if (band == b).sum() >= PERIOD_MIN_LENGTH]
    keep = np.isin(band, useful)
    if keep.sum() < PERIOD_MIN_LENGTH:
        return nan_result
    t, m, err, band = t[keep], m[keep], err[keep], band[keep]
    multi = band if len(useful) == 2 else None
    grid = _coarse_grid(int(np.ceil(np.log2(max(t[-1] - t[0], 8.0)))))
    step = grid[1]
    search = grid >= 2.0 * np.pi / LARGEST_PERIOD
    power = np.where(search, _power(t, m, err, multi, grid), 0.0)
    peaks = _peaks(power, _CANDIDATES)
    if peaks.size == 0:
        return nan_result
    offsets = np.linspace(-step, step, _FINE_POINTS)
    fine = np.unique(np.clip(grid[peaks][:, None] + offsets, grid[search][0], grid[-1]))
    best = float(fine[np.argmax(_power(t, m, err, multi, fine))])
    band_periods: dict[int, float] = {}
    for b in useful:
        sel = band == b
        f_b = (
            fine[np.argmax(_power(t[sel], m[sel], err[sel], None, fine))]
            if multi is not None
            else best
        )
        band_periods[b] = 2.0 * np.pi / float(f_b)
    top = np.sort(power[search])[-100:] + 1e-2
    top = top / top.sum()
    ppe = 1.0 - float(-(top * np.log(top)).sum()) / np.log(100.0)
    peak = float(power[int(np.rint(best / step))])
    rates = []
    for factor in POWER_RATE_FACTORS:
        index = int(np.clip(np.rint(best / factor / step), 0, grid.size - 1))
        rates.append(float(power[index] / peak) if peak > 0 else NAN)
    return 2.0 * np.pi / best, ppe, band_periods, tuple(rates)


# --- Harmonic series ----------------------------------------------------------------------------
N_HARMONICS: Final = 7


def harmonics(t: FloatArray, m: FloatArray, err: FloatArray, period: float) -> list[float]:
    """Weighted least-squares fit of a constant plus 7 harmonics of ``period`` (errors + 0.01
    mag): amplitudes 1-7, phases 2-7 relative to the first (phi_k - k phi_1 mod 2 pi), the mean
    squared residual and the reduced chi2 (errors + 0.02, n - 15 degrees of freedom); NaN
    without a period or with fewer than 15 observations. Order: mag_1..7, phase_2..7, mse, chi.
    """
    dof = 2 * N_HARMONICS + 1
    if not np.isfinite(period) or t.size < dof:
        return [NAN] * (2 * N_HARMONICS + 1)
    error = err + 1e-2
    arg = 2.0 * np.pi / period * np.outer(t, np.arange(1, N_HARMONICS + 1))
    design = np.column_stack([np.ones(t.size), np.cos(arg), np.sin(arg)])
    coef = np.linalg.pinv(design / error[:, None]) @ (m / error)
    fitted = design @ coef
    cos_c, sin_c = coef[1 : N_HARMONICS + 1], coef[N_HARMONICS + 1 :]
    phase = np.arctan2(sin_c, cos_c)
    relative = np.mod(phase[1:] - phase[0] * np.arange(2, N_HARMONICS + 1), 2.0 * np.pi)
    residual = fitted - m
    chi = float(np.sum(residual**2 / (error + 1e-2) ** 2))
    chi_per_dof = chi / (t.size - dof) if t.size - dof >= 1 else NAN
    return [
        *np.hypot(cos_c, sin_c).tolist(),
        *relative.tolist(),
        float(np.mean(residual**2)),
        chi_per_dof,
    ]
