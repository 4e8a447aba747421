"""Model-based light-curve features, restated from the definitions of ALeRCE's feature step
(``lc_classifier/features/extractors`` of alercebroker/pipeline): periodogram, harmonic series,
Ornstein-Uhlenbeck likelihoods (IAR_phi, GP_DRW), Mexican-hat power spectra (MHPS), the
supernova parametric model (SPM), the TDE tail, the FLEET and microlensing fits.

Where ALeRCE's own computation is too costly for simulating thousands of objects, a cheaper
estimate of the same quantity is used; each function says which (and the data card lists them).

One module per family: :mod:`.periodogram` (periods, harmonics), :mod:`.stochastic` (IAR_phi,
GP_DRW, MHPS) and :mod:`.parametric` (SPM, TDE tail, FLEET, microlensing); their names are
importable from here (``fits.periods``).
"""

from __future__ import annotations

from models.simulate.fits.parametric import (
    FIT_MAX_ITERATIONS,
    SPM_PRELUDE,
    fleet,
    spm,
    tde_tail,
    ulens,
    villar_model,
)
from models.simulate.fits.periodogram import (
    LARGEST_PERIOD,
    N_HARMONICS,
    PERIOD_MIN_LENGTH,
    POWER_RATE_FACTORS,
    SMALLEST_PERIOD,
    TRIM_DAYS,
    densest_window,
    harmonics,
    periods,
)
from models.simulate.fits.stochastic import gp_drw, iar_phi, mhps, ou_neg_log_likelihood

__all__ = [
    "FIT_MAX_ITERATIONS",
    "LARGEST_PERIOD",
    "N_HARMONICS",
    "PERIOD_MIN_LENGTH",
    "POWER_RATE_FACTORS",
    "SMALLEST_PERIOD",
    "SPM_PRELUDE",
    "TRIM_DAYS",
    "densest_window",
    "fleet",
    "gp_drw",
    "harmonics",
    "iar_phi",
    "mhps",
    "ou_neg_log_likelihood",
    "periods",
    "spm",
    "tde_tail",
    "ulens",
    "villar_model",
]
