"""Fits of stochastic variability restated from ALeRCE: Ornstein-Uhlenbeck likelihoods (IAR_phi,
GP_DRW) and the Mexican-hat power spectrum (MHPS)."""

from __future__ import annotations

from functools import cache
from typing import Final

import numpy as np

from models.simulate.survey import FloatArray

NAN: Final = float("nan")


# --- Ornstein-Uhlenbeck likelihoods -----------------------------------------------------------
def ou_neg_log_likelihood(
    t: FloatArray, y: FloatArray, noise_var: FloatArray, variance: FloatArray, rate: FloatArray
) -> FloatArray:
    """Negative log-likelihood (up to a constant) of zero-mean observations ``y`` at sorted times
    ``t`` of an Ornstein-Uhlenbeck process with covariance variance * exp(-rate |dt|) plus white
    noise ``noise_var``, for every (variance, rate) pair at once: the exact Kalman filter, one
    step per observation, vectorised over the parameter pairs."""
    mean = np.zeros_like(variance)
    state_var = variance.copy()
    total = np.zeros_like(variance)
    for i in range(t.size):
        if i:
            decay = np.exp(-rate * (t[i] - t[i - 1]))
            mean = decay * mean
            state_var = decay**2 * state_var + variance * (1.0 - decay**2)
        innovation_var = state_var + noise_var[i]
        innovation = y[i] - mean
        total += np.log(innovation_var) + innovation**2 / innovation_var
        gain = state_var / innovation_var
        mean = mean + gain * innovation
        state_var = (1.0 - gain) * state_var
    return total


def _parabola_min(x: FloatArray, f: FloatArray) -> float:
    """Abscissa of the minimum of a sampled curve, refined by a parabola through its
    neighbours."""
    i = int(np.nanargmin(f))
    if 0 < i < x.size - 1:
        a, b, c = f[i - 1], f[i], f[i + 1]
        den = a - 2.0 * b + c
        if den > 0:
            return float(x[i] + 0.5 * (x[1] - x[0]) * (a - c) / den)
    return float(x[i])


def iar_phi(t: FloatArray, m: FloatArray, err: FloatArray) -> float:
    """IAR_phi (Eyheramendy et al. 2018): the autocorrelation phi in [0, 1] of the irregular
    autoregressive model y_i = phi**(t_i - t_{i-1}) y_{i-1} + noise, fitted by maximum
    likelihood to the standardised magnitudes (measurement errors included). ALeRCE minimises
    with Brent's method; here a 64-point grid in log10(1 - phi) refined by a parabola."""
    std = float(np.std(m, ddof=1))
    if not std > 0:
        return NAN
    y = (m - m.mean()) / std
    u = np.linspace(-6.0, 0.0, 64)  # log10(1 - phi)
    phi = 1.0 - 10.0**u
    with np.errstate(divide="ignore"):
        rate = -np.log(phi)
    nll = ou_neg_log_likelihood(t, y, (err / std) ** 2, np.ones_like(rate), rate)
    best = _parabola_min(u, np.where(np.isfinite(nll), nll, np.inf))
    return float(np.clip(1.0 - 10.0**best, 0.0, 1.0))


_LOG_A_BOUNDS: Final = (-10.0, 19.0)
_LOG_C_BOUNDS: Final = (-6.0, 6.0)


def gp_drw(t: FloatArray, flux: FloatArray, err: FloatArray) -> tuple[float, float]:
    """GP_DRW_sigma and GP_DRW_tau: maximum-likelihood damped-random-walk (celerite RealTerm
    a exp(-c dt)) fit to the mean-subtracted difference flux (uJy) with its errors; sigma is the
    variance a (uJy**2), tau = 1/c (days), within ALeRCE's bounds ln a in [-10, 19] and
    ln c in [-6, 6]. ALeRCE uses L-BFGS-B from (0, 0); here a coarse grid in (ln a, ln c) and a
    finer grid around its best point."""
    y = flux - flux.mean()
    noise = err**2
    excess = max(float(np.var(y) - noise.mean()), float(np.var(y)) * 1e-3, 1e-4)
    centre_a = float(np.clip(np.log(excess), *_LOG_A_BOUNDS))
    log_a = np.clip(np.linspace(centre_a - 4.0, centre_a + 4.0, 9), *_LOG_A_BOUNDS)
    log_c = np.linspace(*_LOG_C_BOUNDS, 13)
    for _ in range(2):
        grid_a, grid_c = np.meshgrid(log_a, log_c, indexing="ij")
        nll = ou_neg_log_likelihood(
            t - t[0], y, noise, np.exp(grid_a.ravel()), np.exp(grid_c.ravel())
        )
        i, j = np.unravel_index(int(np.argmin(nll)), grid_a.shape)
        best_a, best_c = float(log_a[i]), float(log_c[j])
        da, dc = (log_a[1] - log_a[0]) * 0.75, (log_c[1] - log_c[0]) * 0.75
        log_a = np.clip(np.linspace(best_a - da, best_a + da, 7), *_LOG_A_BOUNDS)
        log_c = np.clip(np.linspace(best_c - dc, best_c + dc, 7), *_LOG_C_BOUNDS)
    return float(np.exp(best_a)), float(np.exp(-best_c))


# --- Mexican-hat power spectrum -----------------------------------------------------------------
_MHPS_EPSILON: Final = 1.0
_MHPS_DT: Final = 3.0


@cache
def _mhps_norm(s1: float, s2: float) -> float:
    """Integral of the squared difference of the two unit-area Gaussians over the filter window
    (numerically, as the reference implementation does)."""
    half = max(6.0 * s1, 6.0 * _MHPS_DT)
    x = np.linspace(-half, half, 1001)
    g1, g2 = np.exp(-(x**2) / (2 * s1**2)), np.exp(-(x**2) / (2 * s2**2))
    dx = x[1] - x[0]
    return float(np.sum((g1 / (g1.sum() * dx) - g2 / (g2.sum() * dx)) ** 2) * dx)


def _mhps_variance(dt: FloatArray, flux: FloatArray, scale: float) -> tuple[float, int]:
    """Variance of the light curve filtered by a Mexican hat of time scale ``scale`` (two
    Gaussians of widths s and 2 s, s = 0.225 scale / sqrt(2), normalised by the sampling) and the
    number of points with enough neighbours (Arevalo et al. 2012)."""
    s1 = 0.225 * scale / np.sqrt(1.0 + _MHPS_EPSILON)
    s2 = (1.0 + _MHPS_EPSILON) * s1
    half = max(6.0 * s1, 6.0 * _MHPS_DT)
    inside = np.abs(dt) < half
    g1 = np.where(inside, np.exp(-(dt**2) / (2 * s1**2)), 0.0)
    g2 = np.where(inside, np.exp(-(dt**2) / (2 * s2**2)), 0.0)
    valid = (inside & (np.abs(dt) <= half * 2.0 / 3.0)).sum(axis=1) > 3
    if not valid.any():
        return NAN, 0
    filtered = (g1 @ flux) / g1.sum(axis=1) - (g2 @ flux) / g2.sum(axis=1)
    return float(np.mean(filtered[valid] ** 2)) / _mhps_norm(s1, s2), int(valid.sum())


def mhps(
    t: FloatArray, flux: FloatArray, err: FloatArray, long: float, short: float
) -> tuple[float, float, float, float, float]:
    """MHPS ratio, low, high, non_zero and PN_flag of a difference-flux light curve: the
    filtered variances at time scales ``long`` and ``short`` (days), divided by the squared mean
    flux, minus the noise power (mean error / mean flux)**2 (for the short scale only when it
    exceeds it: PN_flag = 1 otherwise), and their ratio. Restated from ALeRCE's mhps package."""
    mean = float(np.mean(flux))
    dt = t[None, :] - t[:, None]
    low, _ = _mhps_variance(dt, flux, long)
    high, non_zero = _mhps_variance(dt, flux, short)
    if non_zero == 0 or not np.isfinite(low) or mean == 0.0:
        return NAN, NAN, NAN, float(non_zero), NAN
    noise = (float(np.mean(err)) / mean) ** 2
    low = low / mean**2 - noise
    high = high / mean**2
    flag = 0.0 if high > noise else 1.0
    if high > noise:
        high -= noise
    return (low / high if high != 0 else NAN), low, high, float(non_zero), flag
