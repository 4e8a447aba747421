"""Model-based light-curve features, restated from the definitions of ALeRCE's feature step
(``lc_classifier/features/extractors`` of alercebroker/pipeline): periodogram, harmonic series,
Ornstein-Uhlenbeck likelihoods (IAR_phi, GP_DRW), Mexican-hat power spectra (MHPS), the
supernova parametric model (SPM), the TDE tail, the FLEET and microlensing fits.

Where ALeRCE's own computation is too costly for simulating thousands of objects, a cheaper
estimate of the same quantity is used; each function says which (and the data card lists them).
"""

from __future__ import annotations

from collections.abc import Callable
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


# --- Supernova parametric model -----------------------------------------------------------------
SPM_PRELUDE: Final = 30.0  # days of forced photometry before the first detection used by SPM
_VILLAR: Final = lc.VillarFit("lmsder")


def villar_model(t: FloatArray, params: FloatArray) -> FloatArray:
    """light-curve's Villar function (amplitude, baseline, t0, tau_rise, tau_fall, nu, gamma)."""
    amp, base, t0, rise, fall, nu, gamma = params[:7]
    x = t - t0
    with np.errstate(over="ignore"):
        rising = amp / (1.0 + np.exp(np.clip(-x / rise, -50.0, 50.0)))
    plateau = 1.0 - nu * x / gamma
    tail = (1.0 - nu) * np.exp(np.clip(-(x - gamma) / fall, -50.0, 50.0))
    return np.asarray(base + rising * np.where(x < gamma, plateau, tail), dtype=np.float64)


def spm(t: FloatArray, flux_mjy: FloatArray, err_mjy: FloatArray) -> list[float]:
    """SPM_A, t0, gamma, beta, tau_rise, tau_fall and chi of one band: the Villar et al. (2019)
    supernova model fitted to the difference flux (mJy) against days since the first detection.

    ALeRCE fits both bands jointly with TNC and a regulariser tying their parameters; here each
    band separately with light-curve's VillarFit (lmsder; it also fits a baseline and needs 8
    points), beta being its relative plateau decline nu. SPM_chi is ALeRCE's: the sum of squared
    residuals over (error + 0.001)**2 per degree of freedom (n - 6)."""
    if t.size < 8:
        return [NAN] * 7
    params = _VILLAR(t, flux_mjy, err_mjy, fill_value=np.nan)
    if not np.all(np.isfinite(params[:7])):
        return [NAN] * 7
    residual = villar_model(t, params) - flux_mjy
    chi = float(np.sum(residual**2 / (err_mjy + 1e-3) ** 2))
    chi_per_dof = chi / (t.size - 6) if t.size - 6 >= 1 else NAN
    amp, _, t0, rise, fall, nu, gamma = params[:7]
    return [float(amp), float(t0), float(gamma), float(nu), float(rise), float(fall), chi_per_dof]


# --- TDE tail, FLEET and microlensing ------------------------------------------------------------
def tde_tail(t: FloatArray, mag: FloatArray, mag_err: FloatArray) -> tuple[float, float, float]:
    """TDE_decay, TDE_decay_chi and TDE_mag0: weighted linear fit of the difference magnitude
    against 2.5 log10(t - t_peak + 40) over the 200 days after the brightest point
    (errors + 0.01 mag; the minimum-norm solution when it is underdetermined)."""
    peak = int(np.argmin(mag))
    after = (t > t[peak]) & (t < t[peak] + 200.0)
    if not after.any():
        return 0.0, NAN, 0.0
    x = 2.5 * np.log10(t[after] - t[peak] + 40.0)
    y, y_err = mag[after], mag_err[after] + 1e-2
    design = np.column_stack([np.ones(x.size), x])
    coef = np.linalg.pinv(design / y_err[:, None]) @ (y / y_err)
    chi = float(np.sum((design @ coef - y) ** 2 / y_err**2))
    chi_per_dof = chi / (x.size - 2) if x.size - 2 >= 1 else NAN
    return float(coef[1]), chi_per_dof, float(coef[0])


_FTOL: Final = 1e-6
_XTOL: Final = 1e-6
# ALeRCE lets curve_fit take up to 800 (FLEET) or 1000 (ulens) evaluations and publishes null when
# it has not converged by then; here at most 40 Levenberg-Marquardt iterations, after which the
# parameters reached are kept (a cost cap: most fits have converged by then).
FIT_MAX_ITERATIONS: Final = 40


def _fit(
    model: Callable[..., FloatArray], jac: Callable[..., FloatArray], x0: list[float],
    bounds: tuple[list[float], list[float]], t: FloatArray, y: FloatArray, sigma: FloatArray,
    max_iter: int, n_dof_params: int,
) -> list[float]:  # fmt: skip
    """Weighted least squares within bounds by a projected Levenberg-Marquardt iteration (the
    role of scipy's curve_fit in ALeRCE): the parameters and the reduced chi2 (sum of squared
    normalised residuals over n - ``n_dof_params``); NaN when the fit breaks down."""
    lo, hi = np.array(bounds[0]), np.array(bounds[1])
    x = np.clip(np.array(x0, dtype=np.float64), lo, hi)
    r = (model(t, *x) - y) / sigma
    cost = float(r @ r)
    damping = 1e-3
    diagonal = np.arange(x.size)
    for _ in range(max_iter):
        j = jac(t, *x) / sigma[:, None]
        jtj = j.T @ j
        jtj[diagonal, diagonal] = jtj[diagonal, diagonal] * (1.0 + damping) + 1e-12
        try:
            step = np.linalg.solve(jtj, -(j.T @ r))
        except np.linalg.LinAlgError:
            return [NAN] * (len(x0) + 1)
        trial = np.minimum(np.maximum(x + step, lo), hi)
        r_trial = (model(t, *trial) - y) / sigma
        cost_trial = float(r_trial @ r_trial)
        if cost_trial <= cost:  # NaN compares False: rejected
            moved = float(np.sqrt((trial - x) @ (trial - x)))
            done = cost - cost_trial <= _FTOL * cost or moved < _XTOL * (_XTOL + np.sqrt(x @ x))
            x, r, cost = trial, r_trial, cost_trial
            damping = max(damping / 3.0, 1e-9)
            if done:
                break
        else:
            damping *= 4.0
            if damping > 1e10:  # no step lowers the cost: a (bounded) minimum
                break
    if not np.isfinite(cost):
        return [NAN] * (len(x0) + 1)
    dof = t.size - n_dof_params
    return [*x.tolist(), cost / dof if dof >= 1 else NAN]


def _fleet_model(t: FloatArray, a: float, w: float, m0: float, t0: float) -> FloatArray:
    x = t - t0
    return np.asarray(np.exp(np.clip(w * x, -50.0, 50.0)) - a * w * x + m0)


def _fleet_jac(t: FloatArray, a: float, w: float, m0: float, t0: float) -> FloatArray:
    x = t - t0
    e = np.exp(np.clip(w * x, -50.0, 50.0))
    out = np.empty((x.size, 4))
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = -w * x, x * e - a * x, 1.0, -w * e + a * w
    return out


def fleet(t: FloatArray, mag: FloatArray, mag_err: FloatArray) -> list[float]:
    """FLEET (Gomez et al. 2020) fit m(t) = exp(w (t - t0)) - a w (t - t0) + m0 to the
    difference magnitudes (errors + 0.01) against days since the band's first point, with
    ALeRCE's start (0.6, -0.05, mean, 0) and bounds. Order: a, w, chi, m0, t0."""
    a, w, m0, t0, chi = _fit(
        _fleet_model, _fleet_jac, [0.6, -0.05, float(np.mean(mag)), 0.0],
        ([0.0, -100.0, 0.0, -50.0], [10.0, 0.0, 30.0, 10000.0]),
        t - t[0], mag, mag_err + 1e-2, FIT_MAX_ITERATIONS, 4,
    )  # fmt: skip
    return [a, w, chi, m0, t0]


def _ulens_model(
    t: FloatArray, u0: float, t_e: float, fs: float, t0: float, mag0: float
) -> FloatArray:
    u = np.sqrt(u0**2 + ((t - t0) / t_e) ** 2)
    u = np.maximum(u, 1e-9)
    amplification = (u**2 + 2.0) / (u * np.sqrt(u**2 + 4.0))
    return np.asarray(-2.5 * np.log10(fs * (amplification - 1.0) + 1.0) + mag0)


def _ulens_jac(
    t: FloatArray, u0: float, t_e: float, fs: float, t0: float, mag0: float
) -> FloatArray:
    x = (t - t0) / t_e
    u = np.maximum(np.sqrt(u0**2 + x**2), 1e-9)
    root = np.sqrt(u**2 + 4.0)
    amplification = (u**2 + 2.0) / (u * root)
    d_amp_du = -8.0 / (u**2 * root**3)
    flux = fs * (amplification - 1.0) + 1.0
    d_mag_d_amp = -2.5 / np.log(10.0) * fs / flux
    du_du0, du_dte, du_dt0 = u0 / u, -(x**2) / (t_e * u), -x / (t_e * u)
    common = d_mag_d_amp * d_amp_du
    out = np.empty((x.size, 5))
    out[:, 0], out[:, 1], out[:, 3], out[:, 4] = (
        common * du_du0,
        common * du_dte,
        common * du_dt0,
        1.0,
    )
    out[:, 2] = -2.5 / np.log(10.0) * (amplification - 1.0) / flux
    return out


def ulens(t: FloatArray, mag: FloatArray, mag_err: FloatArray) -> list[float]:
    """Point-lens microlensing fit (Paczynski 1986) of the corrected magnitudes (errors + 0.01)
    with ALeRCE's start (u0 0.6, tE 20 d, fs 0.5, t0 at the brightest point, mag0 the median)
    and bounds (u0, tE >= 0, fs in [0, 1]). Order: u0, tE, fs, chi, t0, mag0."""
    u0, t_e, fs, t0, mag0, chi = _fit(
        _ulens_model, _ulens_jac,
        [0.6, 20.0, 0.5, float(t[np.argmin(mag)]), float(np.median(mag))],
        ([0.0, 0.0, 0.0, -np.inf, -np.inf], [np.inf, np.inf, 1.0, np.inf, np.inf]),
        t, mag, mag_err + 1e-2, FIT_MAX_ITERATIONS, 4,
    )  # fmt: skip
    return [u0, t_e, fs, chi, t0, mag0]
