"""ALeRCE's feature definitions as the simulator computes them, on inputs whose answer is known:
a sinusoid's period and harmonics, a damped random walk's time scale, a supernova model's time
scales, constant colours, forced photometry around a first detection, turbo-fats statistics."""

from __future__ import annotations

import numpy as np
import pytest

from models.simulate import fits
from models.simulate.features import FEATURE_NAMES, feature_values
from models.simulate.shapes import damped_random_walk
from models.simulate.survey import ZP_UJY, LightCurve, Observation
from models.simulate.variability import variability


def curve(
    mjd: np.ndarray, band: np.ndarray, mag: np.ndarray, err: float = 0.02, ref_mag: float = 30.0
) -> LightCurve:
    """A light curve with corrected magnitudes ``mag`` over a reference source of ``ref_mag``."""
    total = 10.0 ** (-0.4 * (mag - ZP_UJY))
    diff = total - 10.0 ** (-0.4 * (ref_mag - ZP_UJY))
    return LightCurve(
        mjd, band.astype(np.int8), mag, np.full(mjd.size, err), diff,
        total * err / 1.0857, np.full(mjd.size, 0.2),
    )  # fmt: skip


def epochs(rng: np.random.Generator, n: int, days: float) -> tuple[np.ndarray, np.ndarray]:
    t = np.sort(rng.uniform(0.0, days, n)) + 59000.0
    return t, (rng.random(n) < 0.5).astype(np.int8)


def test_sinusoid_period_and_harmonics() -> None:
    rng = np.random.default_rng(1)
    t, band = epochs(rng, 300, 400.0)
    period, amplitude = 0.7345, 0.3
    m = 17.0 + amplitude * np.sin(2 * np.pi * t / period) + rng.normal(0.0, 0.01, t.size)
    err = np.full(t.size, 0.01)
    found, ppe, per_band, rates = fits.periods(t, m, err, band)
    assert found == pytest.approx(period, rel=1e-3)
    assert per_band[0] == pytest.approx(period, rel=1e-3)
    assert per_band[1] == pytest.approx(period, rel=1e-3)
    assert 0.0 < ppe <= 1.0
    assert rates[2] < 0.5  # the periodogram at P/2 is far below the peak
    h = fits.harmonics(t, m, err, found)
    assert h[0] == pytest.approx(amplitude, rel=0.03)  # Harmonics_mag_1
    assert max(h[1:7]) < 0.02  # no power in harmonics 2-7
    assert h[13] < 3e-4  # Harmonics_mse: the noise variance
    assert h[14] < 2.0  # Harmonics_chi: a good fit


def test_too_few_points_give_no_period() -> None:
    rng = np.random.default_rng(2)
    t, band = epochs(rng, 20, 100.0)
    m = 17.0 + rng.normal(0.0, 0.1, t.size)
    assert np.isnan(fits.periods(t, m, np.full(t.size, 0.1), band)[0])


def test_damped_random_walk_time_scale_and_variance() -> None:
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0.0, 1500.0, 300))
    tau, variance = 100.0, 2500.0
    flux = 1000.0 + damped_random_walk(rng, t, tau, np.sqrt(2.0 * variance))
    err = np.full(t.size, 5.0)
    flux = flux + rng.normal(0.0, 5.0, t.size)
    sigma, tau_fit = fits.gp_drw(t, flux, err)
    assert tau / 3 < tau_fit < tau * 3
    assert variance / 3 < sigma < variance * 3


def test_iar_phi_separates_white_noise_from_a_slow_walk() -> None:
    rng = np.random.default_rng(4)
    t = np.sort(rng.uniform(0.0, 300.0, 150))
    err = np.full(t.size, 0.01)
    white = rng.normal(0.0, 0.3, t.size)
    slow = damped_random_walk(rng, t, 2000.0, 0.5)
    assert fits.iar_phi(t, white, err) < 0.3
    assert fits.iar_phi(t, slow, err) > 0.9


def test_spm_recovers_a_supernova_shape() -> None:
    rng = np.random.default_rng(5)
    t = np.arange(-20.0, 100.0, 2.0)
    truth = np.array([1.0, 0.0, 5.0, 3.0, 20.0, 0.2, 10.0])  # A, c, t0, rise, fall, nu, gamma
    err = np.full(t.size, 0.01)
    flux = fits.villar_model(t, truth) + rng.normal(0.0, 0.01, t.size)
    a, _, _, _, rise, fall, chi = fits.spm(t, flux, err)
    assert a == pytest.approx(1.0, rel=0.1)
    assert rise == pytest.approx(3.0, rel=0.3)
    assert fall == pytest.approx(20.0, rel=0.3)
    assert chi < 3.0


def test_mhps_sees_slow_variability_at_the_long_scale() -> None:
    rng = np.random.default_rng(6)
    t = np.sort(rng.uniform(0.0, 600.0, 200))
    flux = 1000.0 + 300.0 * np.sin(2 * np.pi * t / 300.0) + rng.normal(0.0, 5.0, t.size)
    ratio, low, high, non_zero, _ = fits.mhps(t, flux, np.full(t.size, 5.0), 100.0, 10.0)
    assert low > 10 * high
    assert ratio > 10
    assert non_zero > 100


def test_turbofats_statistics_of_a_known_series() -> None:
    m = np.arange(20.0) + 10.0
    t = np.arange(20.0) * 2.0
    out = variability(t, m, np.full(20, 0.1))
    assert out["Amplitude"] == pytest.approx(9.5)  # half the 95th-5th-percentile medians
    assert out["Std"] == pytest.approx(np.std(m))
    assert out["Mean"] == pytest.approx(19.5)
    assert out["MaxSlope"] == pytest.approx(0.5)
    assert out["LinearTrend"] == pytest.approx(0.5)
    assert out["PairSlopeTrend"] == pytest.approx(19 / 30)
    assert out["Q31"] == pytest.approx(9.5)
    assert out["Pvar"] == pytest.approx(1.0)
    assert out["Autocor_length"] >= 1
    assert np.isnan(variability(t[:5], m[:5], np.full(5, 0.1))["Std"])


def test_colours_catalogues_and_forced_photometry() -> None:
    rng = np.random.default_rng(7)
    t, band = epochs(rng, 40, 60.0)
    mag = np.where(band == 0, 18.0, 17.5)
    det = curve(t, band, mag, ref_mag=30.0)
    before = curve(
        np.array([58990.0, 58995.0, 58995.5]), np.array([0, 0, 1]), np.array([25.0, 24.0, 24.0])
    )
    forced = before
    context = {
        "W1": 16.0, "W2": 15.5, "W3": np.nan, "W4": np.nan, "ra": 120.0, "dec": 30.0,
        "sgscore1": 0.9, "distpsnr1": 0.2, "ps_g_r": 0.5, "ps_r_i": 0.2, "ps_i_z": 0.1,
        "sharpnr": 0.01, "chinr": 1.1,
    }  # fmt: skip
    values = feature_values(Observation(det, forced), context)
    assert set(values) == set(FEATURE_NAMES)
    assert values["g_r_mean_corr_12"] == pytest.approx(0.5, abs=1e-9)
    assert values["g_r_max_corr_12"] == pytest.approx(0.5, abs=1e-9)
    assert values["W1_W2"] == pytest.approx(0.5)
    assert values["g_W2"] == pytest.approx(18.0 - 15.5)
    assert values["r_W1"] == pytest.approx(17.5 - 16.0)
    assert np.isnan(values["W2_W3"])
    norm = np.hypot(
        np.hypot(values["Coordinate_x"], values["Coordinate_y"]), values["Coordinate_z"]
    )
    assert norm == pytest.approx(1.0)
    assert values["Coordinate_z"] == pytest.approx(np.sin(np.radians(30.0)))
    assert values["n_forced_phot_band_before_1"] == 2
    assert values["n_forced_phot_band_before_2"] == 1
    assert values["n_forced_phot_band_after_1"] == 0
    first_g = det.diff_flux[det.band == 0][0]
    assert values["last_brightness_before_band_1"] == pytest.approx(before.diff_flux[1])
    assert values["dbrightness_first_det_band_1"] == pytest.approx(first_g - before.diff_flux[1])
    assert values["positive_fraction_1"] == 1.0
    assert values["Timespan"] == pytest.approx(t[-1] - t[0])
    assert values["mean_distnr_12"] == pytest.approx(0.2)
    assert values["mean_sharpnr_12"] == 0.01
