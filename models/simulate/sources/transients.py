"""Transient generators (supernovae: Ia, Ib/c, superluminous, II), sources cited per generator."""

from __future__ import annotations

import numpy as np

from models.simulate import shapes
from models.simulate.sources.counterparts import SN_HOST
from models.simulate.sources.source import Source, peak_time, per_band
from models.simulate.survey import Epochs, FloatArray


def _supernova(
    rng: np.random.Generator,
    epochs: Epochs,
    abs_mag: float,
    tau_rise: float,
    tau_fall_g: float,
    fall_ratio_r: float,
    peak_colour: float,
    r_bump: float = 0.0,
) -> Source:
    """Bazin-shaped supernova in both bands; r declines more slowly than g, so g - r reddens
    after peak (as observed for all SN types)."""
    peak = shapes.flux_limited_peak(rng, 16.0, 19.3)
    z = shapes.redshift_for(peak - abs_mag)
    s = 1.0 + z
    t0 = peak_time(rng, epochs)
    t = epochs.mjd
    rise, fall_g = tau_rise * s, tau_fall_g * s
    flux_g = shapes.bazin(t, t0, rise, fall_g)
    flux_r = shapes.bazin(t, t0 + rng.uniform(0.5, 2.5) * s, rise, fall_g * fall_ratio_r)
    if r_bump > 0.0:  # SN Ia secondary r-band maximum ~25-30 rest-frame days after peak
        flux_r += r_bump * np.exp(-0.5 * ((t - t0 - 27.0 * s) / (7.0 * s)) ** 2)
    mag = per_band(
        epochs, shapes.flux_to_mag(peak, flux_g), shapes.flux_to_mag(peak - peak_colour, flux_r)
    )
    truth = {"redshift": z, "tau_rise": rise, "tau_fall": fall_g, "peak_mag": peak}
    return Source(mag, (None, None), SN_HOST.draw(rng, rng.uniform(17.5, 21.5)), truth)


def snia(rng: np.random.Generator, epochs: Epochs) -> Source:
    """SN Ia: M_g ~ -19.2 +/- 0.35 (ZTF SN Ia DR2), Bazin rise 1.5-4 d and g fall 12-25 d rest
    frame (Villar et al. 2019 fits of PS1-MDS), g - r ~ 0 at peak, r secondary maximum."""
    return _supernova(
        rng, epochs, rng.normal(-19.2, 0.35), rng.uniform(1.5, 4.0), rng.uniform(12.0, 25.0),
        rng.uniform(1.4, 1.9), rng.normal(-0.05, 0.1), r_bump=rng.uniform(0.15, 0.35),
    )  # fmt: skip


def snibc(rng: np.random.Generator, epochs: Epochs) -> Source:
    """SN Ib/c: M ~ -17.6 +/- 0.9 (Drout et al. 2011; Taddia et al. 2019), faster decline than
    SN Ia (g fall 8-18 d), redder at peak from host extinction."""
    return _supernova(
        rng, epochs, rng.normal(-17.6, 0.9), rng.uniform(1.5, 4.0), rng.uniform(8.0, 18.0),
        rng.uniform(1.2, 1.6), rng.normal(0.3, 0.2),
    )  # fmt: skip


def slsn(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Superluminous SN: M_g ~ -21.5 +/- 0.6, rise 8-25 d, fall 25-70 d rest frame, blue and
    slowly reddening (De Cia et al. 2018; Chen et al. 2023, ZTF SLSN-I)."""
    return _supernova(
        rng, epochs, rng.normal(-21.5, 0.6), rng.uniform(8.0, 25.0), rng.uniform(25.0, 70.0),
        rng.uniform(1.05, 1.3), rng.normal(-0.15, 0.15),
    )  # fmt: skip


def snii(rng: np.random.Generator, epochs: Epochs) -> Source:
    """SN II: M ~ -16.9 +/- 1.0 (Richardson et al. 2014), fast exponential rise, a 60-110 d
    plateau (steeper in g), a 1.5-3 mag drop and the 0.0098 mag/d Co-56 tail (Anderson et al.
    2014)."""
    peak = shapes.flux_limited_peak(rng, 16.0, 19.3)
    z = shapes.redshift_for(peak - rng.normal(-16.9, 1.0))
    s = 1.0 + z
    t_peak = peak_time(rng, epochs)
    rise = rng.uniform(1.0, 3.0) * s
    plateau, drop, width = (
        rng.uniform(60.0, 110.0) * s,
        rng.uniform(1.5, 3.0),
        rng.uniform(3, 8) * s,
    )
    dt = epochs.mjd - t_peak
    after = np.maximum(dt, 0.0)

    def band_mag(peak_mag: float, slope: float) -> FloatArray:
        mag = peak_mag + slope * np.minimum(after, plateau) / s
        mag = mag + drop / (1.0 + np.exp(-(after - plateau) / width))
        mag = mag + 0.0098 * np.maximum(after - plateau, 0.0) / s
        return np.asarray(np.where(dt < 0.0, peak_mag - 1.0857 * dt / rise, mag))

    colour = rng.normal(-0.1, 0.15)
    mag = per_band(
        epochs,
        band_mag(peak, rng.uniform(0.015, 0.04)),
        band_mag(peak - colour, rng.uniform(0.0, 0.015)),
    )
    truth = {"redshift": z, "tau_rise": rise, "tau_fall": plateau, "peak_mag": peak}
    return Source(mag, (None, None), SN_HOST.draw(rng, rng.uniform(17.5, 21.5)), truth)
