"""Light-curve features in ALeRCE's naming: ``<Feature>_1`` for g, ``<Feature>_2`` for r,
``<Feature>_12`` for multiband ones, plus contextual features without a suffix.

Variability statistics, periodograms and the Bazin fit come from the ``light-curve`` package
(Malanchev et al. 2021); harmonics, phase-folded eta, structure function and peak features are
computed here with numpy. Undefined features are NaN, as in production: a band with fewer than
``MIN_DETECTIONS`` detections has NaN features (but its detection count).
"""

from __future__ import annotations

from typing import Any, Final

import light_curve as lc
import numpy as np

from models.simulate.survey import FloatArray, LightCurve

MIN_DETECTIONS: Final = 6
MIN_PERIOD_DAYS: Final = 0.04
PERIODOGRAM_OVERSAMPLING: Final = 2.5
CONTEXT_FEATURES: Final = ("sgscore1", "W1_W2", "W2_W3")

# light-curve features on magnitudes: ALeRCE-style name -> feature object.
_MAG_FEATURES: Final[dict[str, Any]] = {
    "Amplitude": lc.Amplitude(),
    "AndersonDarling": lc.AndersonDarlingNormal(),
    "Beyond1Std": lc.BeyondNStd(1.0),
    "Cusum": lc.Cusum(),
    "Eta_e": lc.EtaE(),
    "ExcessVar": lc.ExcessVariance(),
    "IQR": lc.InterPercentileRange(0.25),
    "SmallKurtosis": lc.Kurtosis(),
    "LinearTrend": lc.LinearTrend(),
    "MaxSlope": lc.MaximumSlope(),
    "Mean": lc.Mean(),
    "Meanvariance": lc.MeanVariance(),
    "MedianAbsDev": lc.MedianAbsoluteDeviation(),
    "MedianBRP": lc.MedianBufferRangePercentage(0.1),
    "PercentAmplitude": lc.PercentAmplitude(),
    "PercentDifferenceFluxPercentile": lc.PercentDifferenceMagnitudePercentile(0.05),
    "Skew": lc.Skew(),
    "Std": lc.StandardDeviation(),
    "StetsonK": lc.StetsonK(),
    "ReducedChi2": lc.ReducedChi2(),
    "Duration": lc.Duration(),
}
_MAG_EXTRACTOR: Final = lc.Extractor(*_MAG_FEATURES.values())
# Features with several outputs: keep the first (LinearTrend: slope, not its sigma/noise).
_MAG_OUTPUT_INDEX: Final = [
    sum(len(f.names) for f in list(_MAG_FEATURES.values())[:i]) for i in range(len(_MAG_FEATURES))
]
_BAZIN: Final = lc.BazinFit("lmsder")
_BAZIN_NAMES: Final = (
    "Bazin_A",
    "Bazin_B",
    "Bazin_t0",
    "Bazin_tau_rise",
    "Bazin_tau_fall",
    "Bazin_chi2",
)

BAND_FEATURES: Final[tuple[str, ...]] = (
    *_MAG_FEATURES,
    "n_det",
    "Period_band",
    "Power_band",
    *_BAZIN_NAMES,
    "Harmonics_mag_1",
    "Harmonics_mag_2",
    "Harmonics_mag_3",
    "Harmonics_phase_2",
    "Harmonics_phase_3",
    "Harmonics_mse",
    "Psi_eta",
    "SF_amplitude",
    "SF_gamma",
    "mag_peak",
    "dmag_first_peak",
    "positive_fraction",
)
MULTIBAND_FEATURES: Final = ("Multiband_period", "Multiband_power", "g_r_mean", "g_r_max")

FEATURE_NAMES: Final[tuple[str, ...]] = (
    *(f"{name}_{suffix}" for suffix in ("1", "2") for name in BAND_FEATURES),
    *(f"{name}_12" for name in MULTIBAND_FEATURES),
    *CONTEXT_FEATURES,
)


def _frequency_grid(duration: float) -> FloatArray:
    """Angular-frequency grid for the fast (FFT) periodogram: linspace(0, f_max, 2**k + 1),
    fine enough to resolve a phase drift over the baseline, periods down to MIN_PERIOD_DAYS."""
    f_max = 2.0 * np.pi / MIN_PERIOD_DAYS
    step = 2.0 * np.pi / (max(duration, 10.0) * PERIODOGRAM_OVERSAMPLING)
    k = int(np.clip(np.ceil(np.log2(f_max / step)), 10, 17))
    return np.linspace(0.0, f_max, 2**k + 1)


def _period(t: FloatArray, m: FloatArray, err: FloatArray, band: Any = None) -> tuple[float, float]:
    """Best period and its peak signal-to-noise from a (multiband) Lomb-Scargle periodogram."""
    bands = ["0", "1"] if band is not None else None
    pg = lc.Periodogram(peaks=1, freqs=_frequency_grid(float(t[-1] - t[0])), fast=True, bands=bands)
    kwargs = {"band": band} if band is not None else {}
    out = pg(t, m, err, fill_value=np.nan, **kwargs)
    return float(out[0]), float(out[1])


def _harmonics(t: FloatArray, m: FloatArray, err: FloatArray, period: float) -> list[float]:
    """Weighted fit of 3 harmonics at ``period``: amplitudes, phases of harmonics 2 and 3
    relative to the first (phi_k - k phi_1, mod 2 pi) and the weighted mean squared residual."""
    if not np.isfinite(period) or t.size < 8:
        return [np.nan] * 6
    w = 1.0 / err
    arg = 2.0 * np.pi * np.outer(t / period, np.arange(1, 4))
    design = np.column_stack([np.ones(t.size), np.cos(arg), np.sin(arg)])
    coef, *_ = np.linalg.lstsq(design * w[:, None], m * w, rcond=None)
    a, b = coef[1:4], coef[4:7]
    amp = np.hypot(a, b)
    phi = np.arctan2(-b, a)
    rel = np.mod(phi[1:] - np.arange(2, 4) * phi[0], 2.0 * np.pi)
    mse = float(np.mean(((m - design @ coef) * w) ** 2))
    return [*amp.tolist(), *rel.tolist(), mse]


def _psi_eta(t: FloatArray, m: FloatArray, period: float) -> float:
    """Von Neumann ratio of the light curve folded at ``period``: small when folding is smooth."""
    if not np.isfinite(period) or t.size < 3:
        return np.nan
    folded = m[np.argsort(np.mod(t / period, 1.0), kind="stable")]
    var = float(np.var(folded, ddof=1))
    return float(np.mean(np.diff(folded) ** 2) / var) if var > 0 else np.nan


def _structure_function(t: FloatArray, m: FloatArray, err: FloatArray) -> tuple[float, float]:
    """Power-law structure function SF(dt) = A (dt / 1 yr)**gamma, fitted in log-spaced lag bins
    to the noise-corrected rms magnitude difference (Schmidt et al. 2010)."""
    i, j = np.triu_indices(t.size, k=1)
    lag = t[j] - t[i]
    keep = lag > 1.0
    if keep.sum() < 10:
        return np.nan, np.nan
    lag, dm2 = lag[keep], ((m[j] - m[i]) ** 2 - err[i] ** 2 - err[j] ** 2)[keep]
    edges = np.logspace(0.0, np.log10(lag.max() + 1e-9), 9)
    idx = np.digitize(lag, edges)
    centres, values = [], []
    for k in np.unique(idx):
        sel = idx == k
        power = dm2[sel].mean()
        if sel.sum() >= 3 and power > 0:
            centres.append(np.log10(np.median(lag[sel]) / 365.25))
            values.append(0.5 * np.log10(power))
    if len(centres) < 2:
        return np.nan, np.nan
    gamma, log_amp = np.polyfit(centres, values, 1)
    return float(10.0**log_amp), float(gamma)


def _band_features(curve: LightCurve, multiband_period: float) -> list[float]:
    """Features of one band; harmonics and folding use the multiband period when there is one
    (as ALeRCE does), else the band's own."""
    n = len(curve)
    if n < MIN_DETECTIONS:
        out = [np.nan] * len(BAND_FEATURES)
        out[BAND_FEATURES.index("n_det")] = float(n)
        return out
    t, m, err = curve.mjd, curve.mag, curve.mag_err
    mag_values = _MAG_EXTRACTOR(t, m, err, fill_value=np.nan)[_MAG_OUTPUT_INDEX]
    period, power = _period(t, m, err)
    bazin = _BAZIN(t, curve.diff_flux, curve.diff_flux_err, fill_value=np.nan)
    bazin[2] -= t[0]  # reference time relative to the first detection
    fold = multiband_period if np.isfinite(multiband_period) else period
    peak = int(np.argmin(m))
    return [
        *mag_values.tolist(),
        float(n),
        period,
        power,
        *bazin.tolist(),
        *_harmonics(t, m, err, fold),
        _psi_eta(t, m, fold),
        *_structure_function(t, m, err),
        float(m[peak]),
        float(m[0] - m[peak]),
        float(np.mean(curve.diff_flux > 0)),
    ]


def _multiband_features(curve: LightCurve, g: LightCurve, r: LightCurve) -> list[float]:
    if len(curve) >= MIN_DETECTIONS and len(g) >= 2 and len(r) >= 2:
        period, power = _period(curve.mjd, curve.mag, curve.mag_err, curve.band.astype(str))
    else:
        period, power = np.nan, np.nan
    if len(g) and len(r):
        colour_mean = float(np.mean(g.mag) - np.mean(r.mag))
        colour_max = float(np.min(g.mag) - np.min(r.mag))
    else:
        colour_mean = colour_max = np.nan
    return [period, power, colour_mean, colour_max]


def extract_features(curve: LightCurve, context: dict[str, float]) -> FloatArray:
    """All features of one object, in the order of :data:`FEATURE_NAMES`."""
    g, r = curve.select(0), curve.select(1)
    multiband = _multiband_features(curve, g, r)
    values = [
        *_band_features(g, multiband[0]),
        *_band_features(r, multiband[0]),
        *multiband,
        *(context.get(name, np.nan) for name in CONTEXT_FEATURES),
    ]
    return np.asarray(values, dtype=np.float64)
