"""Light-curve building blocks: parametric supernova shapes, damped random walks, periodic
waveforms, and a flat Lambda-CDM distance modulus for transients."""

from __future__ import annotations

import numpy as np

from models.simulate.survey import FloatArray

_H0 = 70.0  # km/s/Mpc
_OMEGA_M = 0.3
_C_KM_S = 299792.458
_Z_GRID = np.linspace(1e-4, 6.0, 4000)


def _distance_modulus_grid() -> FloatArray:
    inv_e = 1.0 / np.sqrt(_OMEGA_M * (1.0 + _Z_GRID) ** 3 + 1.0 - _OMEGA_M)
    comoving = np.concatenate([[0.0], np.cumsum(0.5 * (inv_e[1:] + inv_e[:-1]) * np.diff(_Z_GRID))])
    comoving += _Z_GRID[0] * inv_e[0]
    d_l_mpc = (1.0 + _Z_GRID) * _C_KM_S / _H0 * comoving
    return np.asarray(5.0 * np.log10(d_l_mpc * 1e6 / 10.0), dtype=np.float64)


_MU_GRID = _distance_modulus_grid()


def redshift_for(distance_modulus: float) -> float:
    """Redshift at which flat Lambda-CDM (H0=70, Om=0.3) has this distance modulus."""
    return float(np.interp(distance_modulus, _MU_GRID, _Z_GRID))


def flux_limited_peak(rng: np.random.Generator, lo: float, hi: float) -> float:
    """Apparent peak magnitude of a flux-limited Euclidean sample: p(m) ~ 10**(0.6 m), lo..hi."""
    a, b = 10.0 ** (0.6 * lo), 10.0 ** (0.6 * hi)
    return float(np.log10(a + rng.random() * (b - a)) / 0.6)


def bazin(t: FloatArray, t0: float, tau_rise: float, tau_fall: float) -> FloatArray:
    """Bazin et al. (2009) flux shape, normalised to a peak of 1."""
    t_peak = t0 + tau_rise * np.log(max(tau_fall / tau_rise - 1.0, 1e-3))

    def shape(x: FloatArray) -> FloatArray:
        x = np.clip(x - t0, -50.0 * tau_rise, None)
        return np.asarray(np.exp(-x / tau_fall) / (1.0 + np.exp(-x / tau_rise)), dtype=np.float64)

    return np.asarray(shape(t) / shape(np.array([t_peak]))[0], dtype=np.float64)


def flux_to_mag(peak_mag: float, flux: FloatArray) -> FloatArray:
    """Magnitude of a shape normalised to 1 at ``peak_mag``; zero flux becomes +inf (undetected)."""
    with np.errstate(divide="ignore"):
        return np.asarray(peak_mag - 2.5 * np.log10(np.maximum(flux, 0.0)), dtype=np.float64)


def damped_random_walk(
    rng: np.random.Generator, t: FloatArray, tau: float, sf_inf: float
) -> FloatArray:
    """Exact Ornstein-Uhlenbeck (DRW) realisation at sorted times ``t``, in magnitudes.

    ``sf_inf`` is the structure function at infinite lag, so the process variance is sf_inf**2/2
    (Kelly et al. 2009; MacLeod et al. 2010).
    """
    sigma = sf_inf / np.sqrt(2.0)
    x = np.empty(t.size)
    if t.size == 0:
        return x
    decay = np.exp(-np.diff(t) / tau)
    noise = rng.normal(0.0, 1.0, t.size)
    x[0] = sigma * noise[0]
    scale = sigma * np.sqrt(1.0 - decay**2)
    for i in range(1, t.size):
        x[i] = x[i - 1] * decay[i - 1] + scale[i - 1] * noise[i]
    return x


def fourier_wave(phase: FloatArray, amplitudes: FloatArray, phases: FloatArray) -> FloatArray:
    """Sum of harmonics sum_k a_k sin(2 pi k phase + phi_k), rescaled to peak-to-peak 1 and
    centred so that the maximum brightness (most negative magnitude offset) is at -0.5."""
    k = np.arange(1, amplitudes.size + 1)
    grid = np.linspace(0.0, 1.0, 256, endpoint=False)
    wave = np.sin(2 * np.pi * np.outer(phase, k) + phases) @ amplitudes
    ref = np.sin(2 * np.pi * np.outer(grid, k) + phases) @ amplitudes
    lo, hi = ref.min(), ref.max()
    return np.asarray((wave - lo) / (hi - lo) - 0.5, dtype=np.float64)


def sawtooth_harmonics(
    rng: np.random.Generator, r21: float, r31: float
) -> tuple[FloatArray, FloatArray]:
    """Harmonic amplitudes and phases of a pulsator's asymmetric (fast-rise, slow-decline)
    light curve with Fourier amplitude ratios R21, R31 (Simon & Lee 1981)."""
    amps = np.array([1.0, r21, r31, 0.5 * r31])
    phases = np.array([0.0, np.pi, 0.0, np.pi]) + rng.normal(0.0, 0.15, 4)
    # Brightness is -magnitude: a sawtooth in brightness rises fast and declines slowly.
    return -amps, phases


def pulses(
    rng: np.random.Generator,
    t: FloatArray,
    span: tuple[float, float],
    rate_per_day: float,
    amplitude: tuple[float, float],
    rise: tuple[float, float],
    decay: tuple[float, float],
) -> FloatArray:
    """Sum of random fast-rise/exponential-decay pulses (flares, bursts, dips), in units of
    their amplitude; events occur as a Poisson process over ``span``."""
    out = np.zeros(t.size)
    n = rng.poisson(rate_per_day * (span[1] - span[0]))
    for t_event in rng.uniform(span[0], span[1], n):
        a = rng.uniform(*amplitude)
        r, d = rng.uniform(*rise), rng.uniform(*decay)
        dt = t - t_event
        rising = np.exp(np.clip(dt / r, -50.0, 0.0))
        out += a * np.where(dt < 0.0, rising, np.exp(-np.maximum(dt, 0.0) / d))
    return out
