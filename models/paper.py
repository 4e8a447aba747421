"""Facts of the seed paper's reference code (Perez-Carrasco et al., mperezcarrasco/AnomalyALeRCE),
restated as data: the feature families its preprocessing knows, their fixed scales, which are
log-scaled or clipped then log-scaled, and the features it leaves out on purpose.

Read from ``src/utils/norm_scales.py`` (``feature_scales``, ``use_log``, ``use_clip_and_log``) and
``src/utils/normalize.py`` (``banned_features``, the missing-value fill) at the repository's newest
commit (115c4dd). Names are the 2023 ALeRCE feature names the paper was trained on
(``schemas/ztf-features/2023``); :mod:`models.features` carries them to today's names.
``tests/unit/test_upstream_facts.py`` pins these numbers.
"""

from __future__ import annotations

from typing import Final

# family -> (low, high) of the fixed linear scale, in the reference's order: the reference takes
# the first family whose name occurs in a feature's name, so 'PercentAmplitude_1' gets
# 'Amplitude''s scale there; we take the longest matching family (see family_of).
FAMILY_SCALES: Final[dict[str, tuple[float, float]]] = {
    "SPM_A": (0.05, 2.0),
    "SPM_beta": (1.0, 65.0),
    "SPM_chi": (0.0, 2.0),
    "SPM_gamma": (0.0, 0.9),
    "SPM_t0": (-20.0, 20.0),
    "SPM_tau_fall": (5.0, 93.0),
    "SPM_tau_rise": (1.0, 45.0),
    "meanra": (0.0, 360.0),
    "meandec": (-30.0, 90.0),
    "Amplitude": (0.0, 2.4),
    "AndersonDarling": (0.1, 1.0),
    "Autocor_length": (1.0, 20.0),
    "Beyond1Std": (0.05, 0.6),
    "Con": (0.0, 0.13),
    "Eta_e": (8e-4, 4.0),
    "ExcessVar": (-5e5, 1.4e-3),
    "GP_DRW_sigma": (1e-4, 1.0),
    "GP_DRW_tau": (1e-2, 700.0),
    "Gskew": (-1.0, 1.0),
    "Harmonics_mag": (1e-2, 5.0),
    "Harmonics_mse": (0.0, 0.0140),
    "Harmonics_phase": (0.0, 6.28),
    "IAR_phi": (0.0, 1.0),
    "LinearTrend": (-0.08, 0.08),
    "MHPS_high": (5e-6, 7.0),
    "MHPS_low": (1e-4, 30.0),
    "MHPS_ratio": (1e-2, 500.0),
    "MaxSlope": (1.5e-2, 200.0),
    "Meanvariance": (1.5e-3, 5e-2),
    "MedianAbsDev": (1e-2, 1.0),
    "MedianBRP": (0.0, 0.85),
    "Multiband_period": (5e-2, 1e3),
    "Period_fit": (0.0, 0.25),
    "delta_period": (3e-8, 5.0),
    "PairSlopeTrend": (-0.3, 0.4),
    "PercentAmplitude": (0.0, 0.2),
    "Power_rate": (0.0, 0.9),
    "Psi_CS": (0.0, 0.5),
    "Psi_eta": (0.05, 3.0),
    "Pvar": (1e-5, 1.0),
    "Q31": (0.05, 1.0),
    "Rcs": (0.1, 0.45),
    "SF_ML_amplitude": (-0.5, 1.7),
    "SF_ML_gamma": (-0.5, 2.0),
    "Skew": (-1.5, 1.5),
    "SmallKurtosis": (-1.7, 6.0),
    "Std": (0.03, 0.6),
    "StetsonK": (0.66, 0.96),
    "delta_mag": (0.05, 2.0),
    "dmag_first_det": (-1.0, 6.5),
    "dmag_non_det": (0.0, 6.5),
    "g-r_max": (-0.5, 2.2),
    "g-r_mean": (-0.3, 2.2),
    "gal_b": (-67.0, 81.6),
    "gal_l": (3.2, 356.8),
    "last_diffmaglim_before": (17.5, 20.9),
    "max_diffmaglim_after": (17.5, 21.0),
    "max_diffmaglim_before": (19.0, 21.0),
    "median_diffmaglim_after": (17.2, 20.5),
    "median_diffmaglim_before": (18.4, 20.8),
    "n_non_det_after": (5.0, 100.0),
    "n_non_det_before": (10.0, 25.0),
    "positive_fraction": (0.0, 1.0),
    "rb": (0.6, 1.0),
    "sgscore1": (0.0, 1.0),
    "W1-W2": (-0.5, 1.4),
    "W2-W3": (-0.3, 4.2),
    "r-W3": (1.5, 10.0),
    "r-W2": (0.9, 8.8),
    "g-W3": (1.9, 11.0),
    "g-W2": (1.0, 10.8),
}

# Families scaled on the natural log of the value (and of the scale's bounds).
LOG_FAMILIES: Final[frozenset[str]] = frozenset(
    {
        "Eta_e",
        "GP_DRW_sigma",
        "GP_DRW_tau",
        "Harmonics_mag",
        "MHPS_high",
        "MaxSlope",
        "Meanvariance",
        "MedianAbsDev",
        "Multiband_period",
        "Pvar",
    }
)

# Families clipped from below at the scale's low bound, then log-scaled.
CLIP_LOG_FAMILIES: Final[frozenset[str]] = frozenset({"MHPS_low", "MHPS_ratio", "delta_period"})

# Features the reference leaves out on purpose (magnitudes and counts that carry distance or
# survey depth rather than variability, flags, and epoch-dependent times).
EXCLUDED: Final[frozenset[str]] = frozenset(
    {
        "mean_mag_1",
        "mean_mag_2",
        "min_mag_1",
        "min_mag_2",
        "Mean_1",
        "Mean_2",
        "n_det_1",
        "n_det_2",
        "n_pos_1",
        "n_pos_2",
        "n_neg_1",
        "n_neg_2",
        "first_mag_1",
        "first_mag_2",
        "MHPS_non_zero_1",
        "MHPS_non_zero_2",
        "MHPS_PN_flag_1",
        "MHPS_PN_flag_2",
        "W1",
        "W2",
        "W3",
        "W4",
        "iqr_1",
        "iqr_2",
        "delta_mjd_fid_1",
        "delta_mjd_fid_2",
        "last_mjd_before_fid_1",
        "last_mjd_before_fid_2",
        "g-r_ml",
        "MHAOV_Period_1",
        "MHAOV_Period_2",
    }
)

# What the reference writes for an undefined (NaN) feature after scaling.
MISSING_VALUE: Final = -1.1


def family_of(name_2023: str) -> str | None:
    """The family of a feature named as in 2023: the longest family name occurring in it (the
    reference takes the first in its table order, which differs for 'PercentAmplitude_*')."""
    found = [family for family in FAMILY_SCALES if family in name_2023]
    return max(found, key=len) if found else None


def first_family_of(name_2023: str) -> str | None:
    """The family the reference itself gives a feature: the first in its table order whose name
    occurs in the feature's (``get_key_of_feature_scales``; reproduced only to measure the effect
    of not doing so, see models.preprocessing)."""
    return next((family for family in FAMILY_SCALES if family in name_2023), None)
