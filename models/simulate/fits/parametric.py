"""Parametric light-curve fits restated from ALeRCE: the supernova parametric model (SPM), the
TDE tail, FLEET and point-lens microlensing, the last two by a bounded Levenberg-Marquardt
iteration (:func:`_fit`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np

from models.extras import SIM, require
from models.simulate.survey import FloatArray

lc = require("light_curve", SIM, "simulated ZTF features")

NAN: Final = float("nan")


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
