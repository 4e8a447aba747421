"""The turbo-fats variability statistics of ALeRCE's feature step (``Amplitude`` ... ``IAR_phi``,
``SF_ML_*``: :data:`TURBOFATS`) of one band's detections, on corrected magnitudes, and the folded
``Psi_CS``/``Psi_eta`` (:func:`folded_kim`); :mod:`models.simulate.features` assembles them into
the whole record."""

from __future__ import annotations

from typing import Final

import numpy as np

from models.extras import SIM, require
from models.simulate import fits
from models.simulate.survey import FloatArray

# Only the ZTF simulation imports this module (lazily): without the 'sim' extra, one line names it.
lc = require("light_curve", SIM, "simulated ZTF features")
_special = require("scipy.special", SIM, "simulated ZTF features")
gammainc, log_ndtr = _special.gammainc, _special.log_ndtr

MIN_DETECTIONS: Final = 6  # turbo-fats needs more than 5 detections in a band
NAN: Final = float("nan")

# Features light-curve computes exactly as turbo-fats defines them.
_LC_EXTRACTOR: Final = lc.Extractor(
    lc.StetsonK(), lc.MedianAbsoluteDeviation(), lc.LinearTrend(), lc.MaximumSlope(), lc.Mean()
)
_LC_NAMES: Final = ("StetsonK", "MedianAbsDev", "LinearTrend", None, None, "MaxSlope", "Mean")
TURBOFATS: Final = (
    "Amplitude", "AndersonDarling", "Autocor_length", "Beyond1Std", "Con", "Eta_e", "Gskew",
    "MaxSlope", "Mean", "Meanvariance", "MedianAbsDev", "MedianBRP", "PairSlopeTrend",
    "PercentAmplitude", "Q31", "Rcs", "Skew", "SmallKurtosis", "Std", "StetsonK", "Pvar",
    "ExcessVar", "SF_ML_amplitude", "SF_ML_gamma", "IAR_phi", "LinearTrend",
)  # fmt: skip


def _autocorrelation_length(m: FloatArray) -> float:
    """First lag at which the sample autocorrelation drops below 1/e (the length if never)."""
    x = m - m.mean()
    n = x.size
    spectrum = np.fft.rfft(x, 2 * n)
    acov = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    below = np.flatnonzero(acov / acov[0] < np.exp(-1.0))
    return float(below[0]) if below.size else float(n)


def _anderson_darling(m: FloatArray) -> float:
    """Anderson-Darling normality statistic A2 (mean and sample standard deviation estimated),
    mapped to (0, 1) by 1 / (1 + exp(-10 (A2 - 0.3)))."""
    n = m.size
    z = np.sort((m - m.mean()) / np.std(m, ddof=1))
    i = np.arange(1, n + 1)
    a2 = -n - np.sum((2 * i - 1) / n * (log_ndtr(z) + log_ndtr(-z[::-1])))
    return float(1.0 / (1.0 + np.exp(-10.0 * (a2 - 0.3))))


def _structure_function(t: FloatArray, m: FloatArray, err: FloatArray) -> tuple[float, float]:
    """SF_ML_amplitude and SF_ML_gamma: the structure function sqrt(<dm**2 - err**2>) in
    0.1-dex lag bins (5-365 d), fitted as A (lag / yr)**gamma between 0.01 and 0.5 yr (Schmidt et
    al. 2010), with turbo-fats' limits and fallbacks."""
    i, j = np.triu_indices(t.size, k=1)
    lag = t[j] - t[i]
    keep = (lag >= 5.0) & (lag <= 365.0)
    lag, power = lag[keep], ((m[i] - m[j]) ** 2 - err[i] ** 2 - err[j] ** 2)[keep]
    edges = 10.0 ** np.arange(np.log10(5.0), np.log10(2000.0), 0.1)
    index = np.digitize(lag, edges) - 1
    taus, sfs = [], []
    for k in range(edges.size - 1):
        sel = index == k
        if sel.any() and power[sel].mean() >= 0:
            sfs.append(np.sqrt(power[sel].mean()))
            taus.append(0.5 * (edges[k] + edges[k + 1]) / 365.0)
    tau, sf = np.array(taus), np.array(sfs)
    fit = (tau <= 0.5) & (tau > 0.01)
    if tau.size < 2 or fit.sum() < 2:
        return -0.5, -0.5
    with np.errstate(divide="ignore"):
        gamma, log_a = np.polyfit(np.log10(tau[fit]), np.log10(sf[fit]), 1)
    if not (np.isfinite(gamma) and np.isfinite(log_a)):
        return -0.5, -0.5
    a = 10.0**log_a
    if a < 0.005:
        return 0.0, 0.0
    return float(min(a, 15.0)), float(np.clip(gamma, -0.5, 3.0))


def variability(t: FloatArray, m: FloatArray, err: FloatArray) -> dict[str, float]:
    """The 26 turbo-fats features of one band's detections (NaN with fewer than 6)."""
    n = m.size
    if n < MIN_DETECTIONS:
        return dict.fromkeys(TURBOFATS, NAN)
    out = {
        name: float(v)
        for name, v in zip(_LC_NAMES, _LC_EXTRACTOR(t, m, err, fill_value=np.nan), strict=True)
        if name
    }
    mean, std0 = float(m.mean()), float(np.std(m))
    median = float(np.median(m))
    ordered = np.sort(m)
    tail = int(np.ceil(0.05 * n))
    out["Amplitude"] = float(np.median(ordered[-tail:]) - np.median(ordered[:tail])) / 2.0
    out["AndersonDarling"] = _anderson_darling(m)
    out["Autocor_length"] = _autocorrelation_length(m)
    weighted = float(np.average(m, weights=1.0 / err**2))
    spread = np.sqrt(np.sum((m - weighted) ** 2) / (n - 1))
    out["Beyond1Std"] = float(np.mean(np.abs(m - weighted) > spread))
    outside = np.abs(m - mean) > 2.0 * std0
    out["Con"] = float(np.mean(outside[:-2] & outside[1:-1] & outside[2:]))
    weights = 1.0 / np.diff(t) ** 2
    out["Eta_e"] = float(np.sum(weights * np.diff(m) ** 2) / np.sum(weights) / std0**2)
    p3, p97 = np.percentile(m, [3.0, 97.0])
    out["Gskew"] = float(np.median(m[m <= p3]) + np.median(m[m >= p97]) - 2.0 * median)
    out["Meanvariance"] = std0 / mean
    out["MedianBRP"] = float(np.mean(np.abs(m - median) < (ordered[-1] - ordered[0]) / 10.0))
    steps = np.diff(m[-30:])
    out["PairSlopeTrend"] = float(((steps > 0).sum() - (steps <= 0).sum()) / 30.0)
    out["PercentAmplitude"] = float(np.max(np.abs(m - median)) / median)
    q25, q75 = np.percentile(m, [25.0, 75.0])
    out["Q31"] = float(q75 - q25)
    cumulative = np.cumsum(m - mean) / (n * std0)
    out["Rcs"] = float(cumulative.max() - cumulative.min())
    centred = m - mean
    out["Skew"] = float(np.mean(centred**3) / std0**3)
    c1 = n * (n + 1) / ((n - 1) * (n - 2) * (n - 3))
    c2 = 3.0 * (n - 1) ** 2 / ((n - 2) * (n - 3))
    out["SmallKurtosis"] = float(c1 * np.sum((centred / std0) ** 4) - c2)
    out["Std"] = std0
    chi2 = float(np.sum(centred**2 / err**2))
    out["Pvar"] = float(gammainc((n - 1) / 2.0, chi2 / 2.0))
    out["ExcessVar"] = float(np.sum(centred**2 - err**2) / (n * mean**2))
    out["SF_ML_amplitude"], out["SF_ML_gamma"] = _structure_function(t, m, err)
    out["IAR_phi"] = fits.iar_phi(t, m, err)
    return out


def folded_kim(t: FloatArray, m: FloatArray, period: float) -> tuple[float, float]:
    """Psi_CS and Psi_eta: range of the cumulative sum and von Neumann ratio of the detections
    folded at twice the multiband period (NaN with 2 detections or fewer)."""
    if m.size <= 2 or not np.isfinite(period):
        return NAN, NAN
    folded = m[np.argsort(np.mod(t, 2.0 * period), kind="stable")]
    sigma = float(np.std(folded))
    if sigma == 0.0:
        return NAN, NAN
    cumulative = np.cumsum(folded - folded.mean()) / (m.size * sigma)
    eta = float(np.sum(np.diff(folded) ** 2) / ((m.size - 1) * sigma**2))
    return float(cumulative.max() - cumulative.min()), eta
