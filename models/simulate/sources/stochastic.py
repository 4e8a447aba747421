"""Stochastic generators (quasars, AGN, blazars, CVs and novae, young stellar objects), sources
cited per generator."""

from __future__ import annotations

import numpy as np

from models.simulate import shapes
from models.simulate.sources.counterparts import AGN, BLAZAR, CV, QSO, YSO
from models.simulate.sources.source import (
    Source,
    drw_mag,
    median_reference,
    peak_time,
    per_band,
    r_median,
)
from models.simulate.survey import Epochs


def qso(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Quasar: DRW with rest-frame log10 tau ~ N(2.3, 0.25) d and SF_inf ~ 0.18 mag (MacLeod et
    al. 2010, SDSS Stripe 82), 0.5 < z < 3, blue (g - r ~ 0.15), bluer when brighter."""
    z = rng.uniform(0.5, 3.0)
    tau = 10.0 ** rng.normal(2.3, 0.25) * (1.0 + z)
    sf = 10.0 ** rng.normal(-0.7, 0.2)
    g = rng.uniform(17.5, 20.0)
    mag = per_band(epochs, g, g - rng.normal(0.15, 0.12))
    mag = mag + drw_mag(rng, epochs, tau, sf, rng.uniform(0.7, 0.9))
    ctx = QSO.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {"redshift": z, "tau": tau})


def agn(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Host-dominated AGN (Seyfert 1): a blue DRW nucleus (log10 tau ~ N(2.1, 0.3) d rest,
    SF_inf ~ 0.25 mag) diluted by a red host galaxy, 0.03 < z < 0.4; extended (low sgscore1)."""
    z = rng.uniform(0.03, 0.4)
    tau = 10.0 ** rng.normal(2.1, 0.3) * (1.0 + z)
    nucleus_fraction = rng.uniform(0.25, 0.75)
    total_g = rng.uniform(16.5, 19.5)
    host_colour, nucleus_colour = rng.normal(0.8, 0.1), rng.normal(0.2, 0.1)
    var = drw_mag(rng, epochs, tau, 10.0 ** rng.normal(-0.55, 0.2), rng.uniform(0.75, 0.9))
    nucleus = nucleus_fraction * 10.0 ** (-0.4 * var)
    host = 1.0 - nucleus_fraction
    colour_shift = per_band(epochs, 0.0, 1.0)  # r = g - colour for both components
    flux = host * 10.0 ** (0.4 * host_colour * colour_shift) + nucleus * 10.0 ** (
        0.4 * nucleus_colour * colour_shift
    )
    mag = total_g - 2.5 * np.log10(flux)
    ctx = AGN.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {"redshift": z, "tau": tau})


def blazar(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Blazar: large-amplitude DRW (SF_inf ~ 0.45 mag, rest log10 tau ~ N(1.6, 0.4) d) plus
    Poisson flares of 0.5-2 mag (1-6 per year), colour changing little (Ruan et al. 2012)."""
    z = rng.uniform(0.1, 2.0)
    tau = 10.0 ** rng.normal(1.6, 0.4) * (1.0 + z)
    g = rng.uniform(16.5, 19.5)
    mag = per_band(epochs, g, g - rng.uniform(0.3, 0.9))
    mag = mag + drw_mag(rng, epochs, tau, 10.0 ** rng.normal(-0.35, 0.15), rng.uniform(0.9, 1.1))
    flares = shapes.pulses(
        rng, epochs.mjd, (epochs.start - 30, epochs.end), rng.uniform(1, 6) / 365.25,
        (0.5, 2.0), (2.0, 10.0), (5.0, 40.0),
    )  # fmt: skip
    mag = mag - 2.5 * np.log10(1.0 + (10.0**0.4 - 1.0) * flares)
    ctx = BLAZAR.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {"redshift": z, "tau": tau})


def cv_nova(rng: np.random.Generator, epochs: Epochs) -> Source:
    """CV/Nova. 85% dwarf novae: quiescence at 18.5-21.5 mag, 2-5 mag outbursts lasting 3-15 d
    every 15-200 d (Warner 1995; Otulakowska-Hypka et al. 2016). 15% classical novae: peak
    12.5-17.5 mag, t2 = 5-100 d, 8-13 mag above the progenitor (Strope et al. 2010)."""
    t = epochs.mjd
    if rng.random() < 0.85:
        quiet = rng.uniform(18.5, 21.5)
        amp, length = rng.uniform(2.0, 5.0), rng.uniform(3.0, 15.0)
        recurrence, decline = rng.uniform(15.0, 200.0), rng.uniform(0.3, 1.0)
        starts = np.arange(epochs.start - rng.uniform(0, recurrence), epochs.end, recurrence)
        starts = starts + rng.normal(0.0, 0.15 * recurrence, starts.size)
        boost = np.zeros(t.size)
        for t_start in starts:
            dt = t - t_start
            rise = np.clip(dt / 1.5, 0.0, 1.0) * amp
            fade = amp - decline * np.maximum(dt - length, 0.0)
            boost = np.maximum(boost, np.where(dt >= 0.0, np.minimum(rise, fade), 0.0))
        quiet_colour = rng.uniform(0.2, 0.8)
        colour = np.where(boost > 0.5, rng.normal(0.0, 0.1), quiet_colour)
        mag = quiet - boost - per_band(epochs, 0.0, colour)
        ref = (quiet, quiet - quiet_colour)
        truth = {"period": recurrence}
    else:
        peak = rng.uniform(12.5, 17.5)
        t2, alpha = 10.0 ** rng.uniform(0.7, 2.0), rng.uniform(0.5, 1.0)
        t_peak = peak_time(rng, epochs)
        quiet = peak + rng.uniform(8.0, 13.0)
        dt = t - t_peak
        mag = np.where(dt < 0.0, peak - dt * 2.0, peak + 2.0 * (np.maximum(dt, 0.0) / t2) ** alpha)
        mag = np.minimum(mag, quiet)
        colour = rng.uniform(0.0, 0.6) + 0.5 * np.clip(dt / t2, 0.0, 1.0)  # H-alpha in r
        mag = mag - per_band(epochs, 0.0, colour)
        ref = (quiet, quiet - 0.5)
        truth = {"tau_fall": t2}
    ctx = CV.draw(rng, float(ref[1]))
    return Source(np.asarray(mag, dtype=np.float64), ref, ctx, truth)


def yso(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Young stellar object: very red (g - r 1-2), DRW with tau 2-40 d and SF 0.1-0.5 mag plus
    extinction dips (A_g/A_r ~ 1.4) or accretion bursts (Cody et al. 2014; Hillenbrand 2022)."""
    g = rng.uniform(15.5, 19.5)
    mag = per_band(epochs, g, g - rng.uniform(1.0, 2.0))
    mag = mag + drw_mag(rng, epochs, rng.uniform(2.0, 40.0), rng.uniform(0.1, 0.5), 0.8)
    span = (epochs.start - 10.0, epochs.end)
    if rng.random() < 0.75:  # dippers: dimming by circumstellar dust
        events = shapes.pulses(
            rng, epochs.mjd, span, rng.uniform(5, 40) / 365.25, (0.3, 2.0), (0.5, 4.0), (0.5, 6.0)
        )
        mag = mag + events * per_band(epochs, 1.0, 1.0 / 1.4)
    else:  # bursters: accretion outbursts, bluer when brighter
        events = shapes.pulses(
            rng, epochs.mjd, span, rng.uniform(2, 10) / 365.25, (0.5, 2.0), (2.0, 10.0), (5.0, 60.0)
        )
        mag = mag - events * per_band(epochs, 1.0, 0.8)
    ctx = YSO.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {})
