"""ALeRCE's current ZTF features (``schemas/ztf-features/2024``: 209 names, ``_1`` = g,
``_2`` = r, ``_12`` = both bands) computed from a simulated :class:`Observation`, with the inputs,
units and rules of ALeRCE's feature step (``lc_classifier/features`` of alercebroker/pipeline):

- variability statistics (turbo-fats: Amplitude ... IAR_phi, SF_ML_*), folded Psi_*, periods,
  harmonics, colours, AllWISE colours and ulens on the **corrected magnitudes** (reference +
  difference flux); periods, harmonics and ulens also use the forced photometry;
- MHPS, GP_DRW, SPM, TDE/FLEET tails, colour variation and the detection / forced-photometry
  (SN) features on the **difference flux** in microjansky (SPM in millijansky);
- catalogue and reference-image features (sgscore1, distpsnr1, ps_*, W*, Coordinate_*,
  *_distnr_12, *_sharpnr_12, *_chinr_12) from the object's drawn counterparts.

Undefined features are NaN (null in ALeRCE's records). :mod:`models.simulate.variability`
computes the turbo-fats statistics and :mod:`models.simulate.fits` the model fits (saying where a
cheaper estimate replaces ALeRCE's computation); this module assembles the whole record.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from models.features import ztf_feature_names
from models.simulate import fits
from models.simulate.survey import FloatArray, LightCurve, Observation
from models.simulate.variability import folded_kim, variability

FEATURE_NAMES: Final[tuple[str, ...]] = ztf_feature_names("2024")
MAX_REFERENCE_DISTANCE: Final = 5.0  # arcsec; farther reference sources are ignored
ZP_UJY: Final = 23.9
NAN: Final = float("nan")
_FLOAT32_MAX: Final = float(np.finfo(np.float32).max)

SN_FEATURES: Final = (
    "positive_fraction", "n_forced_phot_band_before", "dbrightness_first_det_band",
    "dbrightness_forced_phot_band", "last_brightness_before_band", "max_brightness_before_band",
    "median_brightness_before_band", "n_forced_phot_band_after", "max_brightness_after_band",
    "median_brightness_after_band",
)  # fmt: skip
_HARMONICS: Final = (
    *(f"Harmonics_mag_{k}" for k in range(1, 8)),
    *(f"Harmonics_phase_{k}" for k in range(2, 8)),
    "Harmonics_mse",
    "Harmonics_chi",
)
_SPM: Final = (
    "SPM_A",
    "SPM_t0",
    "SPM_gamma",
    "SPM_beta",
    "SPM_tau_rise",
    "SPM_tau_fall",
    "SPM_chi",
)


def flux_to_mag(flux: FloatArray, err: FloatArray) -> tuple[FloatArray, FloatArray]:
    """AB magnitude and its error of |flux| (uJy), as ALeRCE turns difference fluxes into
    'difference magnitudes'."""
    absolute = np.abs(flux)
    with np.errstate(divide="ignore"):
        return ZP_UJY - 2.5 * np.log10(absolute), 2.5 * err / (np.log(10.0) * absolute)


# --- difference-flux families -------------------------------------------------------------
def sn_features(det: LightCurve, forced: LightCurve, first_mjd: float) -> dict[str, float]:
    """Fraction of positive difference detections and the forced-photometry difference flux
    (uJy) before and after the object's first detection, in one band."""
    out = dict.fromkeys(SN_FEATURES, NAN)
    first = NAN
    if len(det):
        out["positive_fraction"] = float(np.mean(det.diff_flux > 0))
        first = float(det.diff_flux[0])
    if len(forced) == 0:
        return out
    before = forced.diff_flux[forced.mjd < first_mjd]
    out["n_forced_phot_band_before"] = float(before.size)
    if before.size:
        out["last_brightness_before_band"] = float(before[-1])
        out["dbrightness_first_det_band"] = first - float(before[-1])
        out["dbrightness_forced_phot_band"] = first - float(np.median(before))
        out["max_brightness_before_band"] = float(before.max())
        out["median_brightness_before_band"] = float(np.median(before))
    after = forced.diff_flux[forced.mjd > first_mjd]
    out["n_forced_phot_band_after"] = float(after.size)
    if after.size:
        out["max_brightness_after_band"] = float(after.max())
        out["median_brightness_after_band"] = float(np.median(after))
    return out


def _mhps_features(det: LightCurve) -> dict[str, float]:
    names = ("MHPS_ratio", "MHPS_low", "MHPS_high", "MHPS_non_zero", "MHPS_PN_flag")
    if len(det) == 0:
        return dict.fromkeys((*names, "MHPS_ratio_365_30", "MHPS_low_365", "MHPS_high_30"), NAN)
    t, f, e = det.mjd, det.diff_flux, det.diff_flux_err
    out = dict(zip(names, fits.mhps(t, f, e, 100.0, 10.0), strict=True))
    ratio, low, high, _, _ = fits.mhps(t, f, e, 365.0, 30.0)
    out.update(MHPS_ratio_365_30=ratio, MHPS_low_365=low, MHPS_high_30=high)
    return out


def _spm(det: LightCurve, forced: LightCurve, first_mjd: float) -> list[float]:
    prelude = forced.take(forced.mjd > first_mjd - fits.SPM_PRELUDE)
    t = np.concatenate([det.mjd, prelude.mjd])
    order = np.argsort(t, kind="stable")
    flux = np.concatenate([det.diff_flux, prelude.diff_flux])[order] * 1e-3
    err = np.concatenate([det.diff_flux_err, prelude.diff_flux_err])[order] * 1e-3
    return fits.spm(t[order] - first_mjd, flux, err)


def _diff_magnitudes(curve: LightCurve) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Times, difference magnitudes and errors with error < 1 mag and magnitude < 30."""
    mag, err = flux_to_mag(curve.diff_flux, curve.diff_flux_err)
    keep = (err < 1.0) & (mag < 30.0)
    return curve.mjd[keep], mag[keep], err[keep]


def _tails(both: LightCurve) -> dict[str, float]:
    """TDE tail and FLEET fits of one band's detections + forced photometry."""
    out: dict[str, float] = {}
    t, mag, err = _diff_magnitudes(both)
    tde = fits.tde_tail(t, mag, err) if t.size >= 2 else (NAN, NAN, NAN)
    out.update(zip(("TDE_decay", "TDE_decay_chi", "TDE_mag0"), tde, strict=True))
    bright = both.take(both.diff_flux > 1.0)
    mag, err = flux_to_mag(bright.diff_flux, bright.diff_flux_err)
    fleet = fits.fleet(bright.mjd, mag, err) if len(bright) >= 4 else [NAN] * 5
    names = ("fleet_a", "fleet_w", "fleet_chi", "fleet_m0", "fleet_t0")
    out.update(zip(names, fleet, strict=True))
    return out


def colour_variation(both: LightCurve, window: float = 10.0) -> float:
    """Standard deviation of the g - r difference-magnitude colour over 10-day windows that hold
    at least 3 points in each band (NaN with fewer than 2 such windows)."""
    keep_mag, keep_err = flux_to_mag(both.diff_flux, both.diff_flux_err)
    keep = (keep_err < 1.0) & (keep_mag < 30.0)
    t, mag, band = both.mjd[keep], keep_mag[keep], both.band[keep]
    if t.size == 0:
        return NAN
    slot = ((t - t.min()) // window).astype(int)
    colours = []
    for s in np.unique(slot):
        g, r = mag[(slot == s) & (band == 0)], mag[(slot == s) & (band == 1)]
        if g.size >= 3 and r.size >= 3:
            colours.append(g.mean() - r.mean())
    return float(np.std(colours, ddof=1)) if len(colours) > 1 else NAN


# --- the whole record -----------------------------------------------------------------------
def _merge(a: LightCurve, b: LightCurve) -> LightCurve:
    order = np.argsort(np.concatenate([a.mjd, b.mjd]), kind="stable")
    fields = ("mjd", "band", "mag", "mag_err", "diff_flux", "diff_flux_err", "distnr")
    return LightCurve(
        *(np.concatenate([getattr(a, name), getattr(b, name)])[order] for name in fields)
    )


def _magnitudes(curve: LightCurve) -> LightCurve:
    """Observations with a usable corrected magnitude."""
    return curve.take(np.isfinite(curve.mag))


def _band_mean_mags(det: LightCurve) -> tuple[float, float]:
    means = []
    for b in (0, 1):
        mags = det.mag[(det.band == b) & np.isfinite(det.mag)]
        means.append(float(mags.mean()) if mags.size else NAN)
    return means[0], means[1]


def _colours(det: LightCurve) -> dict[str, float]:
    out: dict[str, float] = {}
    diff_mag, _ = flux_to_mag(det.diff_flux, det.diff_flux_err)
    for suffix, mags in (("", diff_mag), ("_corr", det.mag)):
        g = mags[(det.band == 0) & np.isfinite(mags)]
        r = mags[(det.band == 1) & np.isfinite(mags)]
        both = g.size > 0 and r.size > 0
        out[f"g_r_mean{suffix}_12"] = float(g.mean() - r.mean()) if both else NAN
        out[f"g_r_max{suffix}_12"] = float(g.min() - r.min()) if both else NAN
    return out


def _catalogues(det: LightCurve, context: dict[str, float]) -> dict[str, float]:
    """AllWISE and Pan-STARRS colours, sky position."""
    out: dict[str, float] = {}
    wise = [context.get(f"W{k}", NAN) for k in range(1, 5)]
    for k in range(3):
        out[f"W{k + 1}_W{k + 2}"] = wise[k] - wise[k + 1]
    for mean, band in zip(_band_mean_mags(det), ("g", "r"), strict=True):
        for k in range(4):
            out[f"{band}_W{k + 1}"] = mean - wise[k]
    for name in ("sgscore1", "distpsnr1", "ps_g_r", "ps_r_i", "ps_i_z"):
        out[name] = context.get(name, NAN)
    ra, dec = np.radians(context.get("ra", NAN)), np.radians(context.get("dec", NAN))
    out["Coordinate_x"] = float(np.cos(ra) * np.cos(dec))
    out["Coordinate_y"] = float(np.sin(ra) * np.cos(dec))
    out["Coordinate_z"] = float(np.sin(dec))
    return out


def _reference(both: LightCurve, context: dict[str, float]) -> dict[str, float]:
    """distnr statistics of observations with a reference source within 5", and that source's
    sharpness and chi."""
    near = both.distnr[(both.distnr >= 0.0) & (both.distnr <= MAX_REFERENCE_DISTANCE)]
    if near.size == 0:
        return dict.fromkeys(
            ("mean_distnr_12", "sigma_distnr_12", "mean_sharpnr_12", "mean_chinr_12"), NAN
        )
    return {
        "mean_distnr_12": float(near.mean()),
        "sigma_distnr_12": float(np.std(near, ddof=1)) if near.size > 1 else NAN,
        "mean_sharpnr_12": context.get("sharpnr", NAN),
        "mean_chinr_12": context.get("chinr", NAN),
    }


def feature_values(obs: Observation, context: dict[str, float]) -> dict[str, float]:
    """Every feature of one object by name (NaN when undefined, e.g. a constant light curve's
    normalised statistics, as in ALeRCE)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _feature_values(obs, context)


def _feature_values(obs: Observation, context: dict[str, float]) -> dict[str, float]:
    det, forced = obs.detections, obs.forced
    both = _merge(det, forced)
    first_mjd = float(det.mjd[0]) if len(det) else NAN
    out: dict[str, float] = {}

    # periods on corrected magnitudes of detections + forced photometry, densest 1000 days
    mags = _magnitudes(both)
    window = fits.densest_window(mags.mjd) if len(mags) else slice(0, 0)
    period, ppe, band_periods, rates = fits.periods(
        mags.mjd[window], mags.mag[window], mags.mag_err[window], mags.band[window]
    )
    out["Multiband_period_12"], out["PPE_12"] = period, ppe
    for name, rate in zip(("1_4", "1_3", "1_2", "2", "3", "4"), rates, strict=True):
        out[f"Power_rate_{name}_12"] = rate

    start = float(mags.mjd.min()) if len(mags) else NAN  # ulens time origin
    for b, suffix in ((0, "_1"), (1, "_2")):
        d, f, all_b = det.select(b), forced.select(b), both.select(b)
        mag_det = _magnitudes(d)
        band: dict[str, float] = variability(mag_det.mjd, mag_det.mag, mag_det.mag_err)
        band_period = band_periods.get(b, NAN)
        band["Period_band"] = band_period
        band["delta_period"] = abs(period - band_period)
        band["Psi_CS"], band["Psi_eta"] = folded_kim(mag_det.mjd, mag_det.mag, period)
        mag_all = _magnitudes(all_b)
        band.update(
            zip(
                _HARMONICS,
                fits.harmonics(mag_all.mjd, mag_all.mag, mag_all.mag_err, period),
                strict=True,
            )
        )
        band.update(_mhps_features(d))
        drw = fits.gp_drw(d.mjd, d.diff_flux, d.diff_flux_err) if len(d) >= 5 else (NAN, NAN)
        band["GP_DRW_sigma"], band["GP_DRW_tau"] = drw
        band.update(zip(_SPM, _spm(d, f, first_mjd), strict=True))
        band.update(_tails(all_b))
        band.update(sn_features(d, f, first_mjd))
        lens = (
            fits.ulens(mag_all.mjd - start, mag_all.mag, mag_all.mag_err)
            if len(mag_all) >= 4
            else [NAN] * 6
        )
        band.update(
            zip(
                ("ulens_u0", "ulens_tE", "ulens_fs", "ulens_chi", "ulens_t0", "ulens_mag0"),
                lens,
                strict=True,
            )
        )
        out.update({name + suffix: value for name, value in band.items()})

    out["color_variation_12"] = colour_variation(both)
    out.update(_colours(det))
    out.update(_catalogues(det, context))
    out.update(_reference(both, context))
    out["Timespan"] = float(det.mjd[-1] - det.mjd[0]) if len(det) else NAN
    return out


def extract_features(obs: Observation, context: dict[str, float]) -> FloatArray:
    """All features of one object, in the order of :data:`FEATURE_NAMES`."""
    values = feature_values(obs, context)
    out = np.array([values[name] for name in FEATURE_NAMES], dtype=np.float64)
    # ALeRCE publishes 32-bit floats: what does not fit one is undefined
    out[~(np.abs(out) <= _FLOAT32_MAX)] = np.nan
    return out
