"""Periodic generators (RR Lyrae, Cepheids, delta Scuti, eclipsing binaries, long-period
variables, rotators), sources cited per generator."""

from __future__ import annotations

import numpy as np

from models.simulate import shapes
from models.simulate.sources.counterparts import CEP, DSCT, ECL, LPV, ROT, RRL
from models.simulate.sources.source import Source, drw_mag, median_reference, per_band, r_median
from models.simulate.survey import Epochs, FloatArray


def _pulsator(
    rng: np.random.Generator,
    epochs: Epochs,
    period: float,
    amp_g: float,
    amp_ratio_r: float,
    colour: float,
    harmonics: tuple[FloatArray, FloatArray],
    colour_swing: float,
    mean_g: tuple[float, float] = (13.5, 19.0),
    envelope: FloatArray | float = 1.0,
) -> FloatArray:
    """Magnitudes of a periodic star: waveform of peak-to-peak amp_g in g (times an optional
    amplitude envelope), smaller in r, hotter (bluer) when brighter by up to colour_swing."""
    phase = np.mod((epochs.mjd - epochs.start) / period + rng.random(), 1.0)
    wave = shapes.fourier_wave(phase, *harmonics)
    g = rng.uniform(*mean_g)
    amp = per_band(epochs, amp_g, amp_g * amp_ratio_r) * envelope
    return np.asarray(
        per_band(epochs, g, g - colour) + amp * wave - per_band(epochs, 0.0, colour_swing * wave)
    )


def rrl(rng: np.random.Generator, epochs: Epochs) -> Source:
    """RR Lyrae: 75% RRab (P ~ 0.57 +/- 0.08 d, g amplitude 0.6-1.3 decreasing with period,
    sawtooth with R21 ~ 0.48, R31 ~ 0.32) and 25% RRc (P 0.25-0.42 d, 0.3-0.6 mag, nearly
    sinusoidal) (Simon & Lee 1981; Sesar et al. 2010)."""
    if rng.random() < 0.75:
        period = float(np.clip(rng.normal(0.57, 0.08), 0.42, 0.9))
        amp = float(np.clip(1.3 - 1.8 * (period - 0.5) + rng.normal(0, 0.15), 0.4, 1.5))
        harm = shapes.sawtooth_harmonics(rng, rng.uniform(0.4, 0.55), rng.uniform(0.25, 0.38))
    else:
        period, amp = rng.uniform(0.25, 0.42), rng.uniform(0.3, 0.6)
        harm = shapes.sawtooth_harmonics(rng, rng.uniform(0.1, 0.2), rng.uniform(0.03, 0.1))
    mag = _pulsator(rng, epochs, period, amp, 0.75, rng.uniform(0.1, 0.4), harm, 0.15)
    ctx = RRL.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {"period": period})


def cep(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Classical Cepheid: P log-uniform in 1.5-60 d, g amplitude 0.4-1.2 mag, sawtooth
    (R21 ~ 0.3-0.5), yellow-red and reddened (g - r 0.5-1.2) (Soszynski et al. 2008)."""
    period = 10.0 ** rng.uniform(np.log10(1.5), np.log10(60.0))
    harm = shapes.sawtooth_harmonics(rng, rng.uniform(0.3, 0.5), rng.uniform(0.15, 0.3))
    mag = _pulsator(
        rng, epochs, period, rng.uniform(0.4, 1.2), 0.7, rng.uniform(0.5, 1.2), harm, 0.2
    )
    ctx = CEP.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {"period": period})


def dsct(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Delta Scuti (high-amplitude, as ZTF detects them): P log-uniform in 0.04-0.25 d, g
    amplitude 0.1-0.8 mag, near-sinusoidal, often a second radial mode with P1/P0 = 0.773
    (Breger 2000; Poleski et al. 2010)."""
    period = 10.0 ** rng.uniform(np.log10(0.04), np.log10(0.25))
    harm = shapes.sawtooth_harmonics(rng, rng.uniform(0.1, 0.3), rng.uniform(0.02, 0.1))
    amp = rng.uniform(0.1, 0.8)
    mag = _pulsator(rng, epochs, period, amp, 0.8, rng.uniform(0.0, 0.35), harm, 0.05)
    if rng.random() < 0.5:
        phase = (epochs.mjd - epochs.start) / (0.773 * period) + rng.random()
        mag = mag + rng.uniform(0.1, 0.5) * amp * 0.5 * np.sin(2 * np.pi * phase)
    ctx = DSCT.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {"period": period})


def eclipsing(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Eclipsing binary: 40% contact (EW, P 0.22-1 d, continuous variation), 60% detached or
    semi-detached (EA/EB, P 1-10 d, narrow primary and secondary eclipses) (Paczynski et al.
    2006; Chen et al. 2020, ZTF periodic variables). ``period`` is the orbital period."""
    contact = rng.random() < 0.4
    period = 10.0 ** rng.uniform(np.log10(0.22), 0.0) if contact else 10.0 ** rng.uniform(0.0, 1.0)
    phase = np.mod((epochs.mjd - epochs.start) / period + rng.random(), 1.0)
    depth1 = rng.uniform(0.15, 0.8) if contact else rng.uniform(0.1, 1.5)
    depth2 = depth1 * (rng.uniform(0.7, 1.0) if contact else rng.uniform(0.0, 0.8))
    width = rng.uniform(0.12, 0.2) if contact else rng.uniform(0.01, 0.05)
    shift = 0.5 + (0.0 if contact else rng.normal(0.0, 0.02))

    def dip(centre: float) -> FloatArray:
        d = np.mod(phase - centre + 0.5, 1.0) - 0.5
        return np.asarray(np.exp(-0.5 * (d / width) ** 2))

    colour = rng.uniform(0.1, 1.2)
    g = rng.uniform(13.5, 19.0)
    depth_ratio_r = rng.uniform(0.85, 1.1)
    depth = depth1 * dip(0.0) + depth2 * dip(shift)
    mag = per_band(epochs, g, g - colour) + depth * per_band(epochs, 1.0, depth_ratio_r)
    ctx = ECL.draw(rng, r_median(epochs, mag))
    # The reference image shows the binary out of eclipse.
    ref = (g, g - colour)
    return Source(mag, ref, ctx, {"period": period})


def lpv(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Long-period variable: 60% Miras (P 150-500 d, g amplitude 2.5-6 mag, r ~0.6 of g) and
    40% semiregulars (P 30-200 d, 0.3-1.5 mag, stochastic amplitude), very red (g - r 1.5-3)
    (Soszynski et al. 2009; Mowlavi et al. 2018)."""
    mira = rng.random() < 0.6
    period = rng.uniform(150.0, 500.0) if mira else rng.uniform(30.0, 200.0)
    amp = rng.uniform(2.5, 6.0) if mira else rng.uniform(0.3, 1.5)
    harm = shapes.sawtooth_harmonics(rng, rng.uniform(0.05, 0.2), rng.uniform(0.0, 0.05))
    mag = _pulsator(
        rng, epochs, period, amp, 0.6, rng.uniform(1.5, 3.0), harm, 0.3, mean_g=(14.0, 19.0)
    )
    # Cycle-to-cycle changes of the mean (Miras) or of the amplitude (semiregulars).
    mag = mag + drw_mag(rng, epochs, period, 0.3 if mira else 0.5 * amp, 0.7)
    ctx = LPV.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {"period": period})


def periodic_other(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Other periodic variables, mostly spotted rotators (BY Dra / RS CVn): P log-uniform in
    0.5-40 d, 0.03-0.25 mag, sinusoidal with slowly evolving amplitude, g - r 0.6-1.5
    (Chen et al. 2020, ZTF 'BY Dra' and 'RS CVn')."""
    period = 10.0 ** rng.uniform(np.log10(0.5), np.log10(40.0))
    harm = (np.array([1.0, rng.uniform(0.0, 0.2)]), rng.uniform(0, 2 * np.pi, 2))
    envelope = 1.0 + 0.3 * np.sin(2 * np.pi * (epochs.mjd - epochs.start) / rng.uniform(200, 800))
    mag = _pulsator(
        rng, epochs, period, rng.uniform(0.03, 0.25), 0.85, rng.uniform(0.6, 1.5), harm, 0.02,
        envelope=envelope,
    )  # fmt: skip
    ctx = ROT.draw(rng, r_median(epochs, mag))
    return Source(mag, median_reference(epochs, mag), ctx, {"period": period})
