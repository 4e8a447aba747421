"""One generator per ALeRCE subclass: true g and r magnitudes at the visits of an object, its
reference-image brightness, contextual features and the true parameters (for tests).

Parameter ranges follow published populations; sources are cited next to each generator and
summarised in the data card (`models/data/ztf-sim-sample/DATACARD.md`). Magnitudes are AB,
time in days (observer frame: transient and quasar time scales are stretched by 1 + z).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.simulate import shapes
from models.simulate.survey import Epochs, FloatArray

Generator = Callable[[np.random.Generator, Epochs], "Source"]
NAN = float("nan")


@dataclass(frozen=True)
class Source:
    """A simulated object before photometry."""

    mag: FloatArray  # true magnitude at each visit (inf = no flux)
    reference: tuple[float | None, float | None]  # per-band reference brightness; None = empty
    context: dict[str, float]  # catalogue and reference-image values (Counterpart.draw)
    truth: dict[str, float] = field(default_factory=dict)


def _per_band(epochs: Epochs, g: FloatArray | float, r: FloatArray | float) -> FloatArray:
    return np.asarray(np.where(epochs.band == 0, g, r), dtype=np.float64)


def _median_reference(epochs: Epochs, mag: FloatArray) -> tuple[float | None, float | None]:
    """Reference brightness of a variable: its median state in each band."""
    refs: list[float | None] = []
    for b in (0, 1):
        sel = mag[epochs.band == b]
        refs.append(float(np.median(sel)) if sel.size else None)
    return refs[0], refs[1]


# Galactic (l, b) -> ICRS unit vectors: the transpose of the standard ICRS-to-galactic rotation.
_GAL_TO_ICRS = np.array(
    [
        [-0.0548755604, -0.8734370902, -0.4838350155],
        [0.4941094279, -0.4448296300, 0.7469822445],
        [-0.8676661490, -0.1980763734, 0.4559837762],
    ]
).T
_ZTF_MIN_DEC = -30.0  # ZTF observes north of declination -30 deg


def sky_position(rng: np.random.Generator, b_scale: float | None) -> tuple[float, float]:
    """(ra, dec) in degrees north of ZTF's declination limit: galactic latitude drawn from a
    Laplace distribution of scale ``b_scale`` degrees (a disk or halo population), or
    isotropic (``None``: extragalactic)."""
    while True:
        l_rad = rng.uniform(0.0, 2.0 * np.pi)
        if b_scale is None:
            b_rad = np.arcsin(rng.uniform(-1.0, 1.0))
        else:
            b_rad = np.radians(np.clip(rng.laplace(0.0, b_scale), -90.0, 90.0))
        gal = np.array(
            [np.cos(b_rad) * np.cos(l_rad), np.cos(b_rad) * np.sin(l_rad), np.sin(b_rad)]
        )
        x, y, z = _GAL_TO_ICRS @ gal
        dec = float(np.degrees(np.arcsin(np.clip(z, -1.0, 1.0))))
        if dec > _ZTF_MIN_DEC:
            return float(np.degrees(np.arctan2(y, x)) % 360.0), dec


Normal = tuple[float, float]  # (mean, standard deviation)


@dataclass(frozen=True)
class Counterpart:
    """Per-class distributions of what ALeRCE takes from catalogues and the reference image.

    - Pan-STARRS1 nearest source (ZTF alert fields): star/galaxy score ``sgscore1`` ~ Beta(a, b)
      (Tachibana & Miller 2018), its distance ``distpsnr1`` (arcsec, log-normal: median, dex)
      and its g-r, r-i, i-z colours.
    - AllWISE (Vega) magnitudes from r - W1 and the W1-W2, W2-W3, W3-W4 colours; W1/W2 found with
      probability ``p_wise``, W3 and W4 more rarely (Wright et al. 2010; Stern et al. 2012 and
      Assef et al. 2013 for AGN; Massaro et al. 2011 for blazars; Koenig & Leisawitz 2014 for
      YSOs).
    - The nearest reference-image source: its offset from the transient (arcsec, log-normal) and
      its PSF-fit sharpness and chi (stars: sharpnr ~ 0, chinr ~ 1; galaxies extended: sharpnr
      > 0.1, chinr > 2 as ALeRCE's correction step uses to call a source stellar).
    - Galactic latitude scale (degrees) of the population; None = isotropic.
    """

    sgscore: tuple[float, float]
    r_w1: Normal
    w1_w2: Normal
    w2_w3: Normal
    w3_w4: Normal
    ps_colours: tuple[Normal, Normal, Normal]
    distpsnr: tuple[float, float] = (0.12, 0.25)
    reference_offset: tuple[float, float] = (0.1, 0.25)
    sharpnr: Normal = (0.0, 0.04)
    chinr: tuple[float, float] = (1.0, 0.15)
    b_scale: float | None = None
    p_wise: float = 0.85
    p_w3: float = 0.35
    p_w4: float = 0.15
    p_star_neighbour: float = 0.0  # chance that the nearest PS1 source is an unrelated star

    def draw(self, rng: np.random.Generator, r_mag: float) -> dict[str, float]:
        """Catalogue values for an object (or host) of r magnitude ``r_mag``; NaN = no match."""
        has_w12 = rng.random() < self.p_wise
        has_w3 = has_w12 and rng.random() < self.p_w3
        has_w4 = has_w3 and rng.random() < self.p_w4 / self.p_w3
        w1 = r_mag - rng.normal(*self.r_w1)
        w2 = w1 - rng.normal(*self.w1_w2)
        w3 = w2 - rng.normal(*self.w2_w3)
        w4 = w3 - rng.normal(*self.w3_w4)
        # AllWISE 95% completeness limits (Vega): 17.1, 15.7, 11.5, 7.7 mag
        has_w12 &= w1 < 17.1 and w2 < 15.7
        has_w3 &= has_w12 and w3 < 11.5
        has_w4 &= has_w3 and w4 < 7.7
        star = rng.random() < self.p_star_neighbour
        colours = [rng.normal(*c) for c in self.ps_colours]
        if star:  # an unrelated field star is nearer than the host in PS1
            colours = [rng.normal(0.6, 0.3), rng.normal(0.25, 0.15), rng.normal(0.1, 0.1)]
        ra, dec = sky_position(rng, self.b_scale)
        return {
            "W1": w1 if has_w12 else NAN,
            "W2": w2 if has_w12 else NAN,
            "W3": w3 if has_w3 else NAN,
            "W4": w4 if has_w4 else NAN,
            "sgscore1": float(rng.beta(*((8.0, 1.5) if star else self.sgscore))),
            "distpsnr1": float(
                10.0 ** rng.uniform(0.0, 1.0) if star else _lognormal(rng, self.distpsnr)
            ),
            "ps_g_r": colours[0],
            "ps_r_i": colours[1],
            "ps_i_z": colours[2],
            "ra": ra,
            "dec": dec,
            "reference_offset": _lognormal(rng, self.reference_offset),
            "sharpnr": float(rng.normal(*self.sharpnr)),
            "chinr": _lognormal(rng, self.chinr),
        }


def _lognormal(rng: np.random.Generator, median_dex: tuple[float, float]) -> float:
    return float(median_dex[0] * 10.0 ** rng.normal(0.0, median_dex[1]))


def _star(r_w1: Normal, ps: tuple[Normal, Normal, Normal], b_scale: float) -> Counterpart:
    """A stellar counterpart: point-like in PS1 and the reference, photospheric WISE colours."""
    return Counterpart((20.0, 1.0), r_w1, (0.0, 0.06), (0.1, 0.2), (0.1, 0.3), ps, b_scale=b_scale)


# Stellar PS1 colours by temperature (Covey et al. 2007 / Tonry et al. 2012 stellar locus).
_HOT = ((0.1, 0.15), (0.02, 0.08), (-0.02, 0.06))  # A-F stars: RR Lyrae, delta Scuti
_WARM = ((0.6, 0.25), (0.22, 0.1), (0.1, 0.06))  # F-K stars, reddened Cepheids
_COOL = ((1.3, 0.2), (0.9, 0.4), (0.5, 0.2))  # M giants
_GALAXY = ((0.65, 0.25), (0.35, 0.12), (0.25, 0.12))
_SN_HOST = Counterpart(
    (1.2, 5.0), (2.7, 0.5), (0.1, 0.2), (2.0, 1.0), (2.0, 0.6), _GALAXY,
    distpsnr=(1.5, 0.35), reference_offset=(1.5, 0.4), sharpnr=(0.3, 0.15), chinr=(4.0, 0.3),
    p_wise=0.6, p_w3=0.4, p_w4=0.1, p_star_neighbour=0.2,
)  # fmt: skip


_QSO = Counterpart(
    (4.0, 2.5), (3.0, 0.5), (1.1, 0.2), (3.0, 0.4), (2.5, 0.3),
    ((0.15, 0.12), (0.12, 0.1), (0.08, 0.1)), distpsnr=(0.15, 0.25), p_w3=0.5, p_w4=0.25,
)  # fmt: skip
_AGN = Counterpart(
    (2.0, 4.0), (3.2, 0.5), (0.7, 0.3), (2.6, 0.5), (2.3, 0.4),
    ((0.55, 0.2), (0.3, 0.1), (0.2, 0.1)), distpsnr=(0.3, 0.3), reference_offset=(0.2, 0.3),
    sharpnr=(0.2, 0.1), chinr=(3.0, 0.3), p_w3=0.6, p_w4=0.3,
)  # fmt: skip
_BLAZAR = Counterpart(
    (3.0, 3.0), (3.3, 0.6), (0.85, 0.2), (2.3, 0.4), (2.2, 0.4),
    ((0.45, 0.2), (0.3, 0.12), (0.2, 0.12)), sharpnr=(0.05, 0.08), chinr=(1.5, 0.3),
    p_w3=0.6, p_w4=0.3,
)  # fmt: skip
_CV = Counterpart(
    (20.0, 1.0), (1.5, 0.8), (0.15, 0.2), (0.6, 0.6), (0.5, 0.5),
    ((0.3, 0.3), (0.2, 0.2), (0.1, 0.15)), b_scale=15.0, p_wise=0.5, p_w3=0.15, p_w4=0.05,
)  # fmt: skip
_YSO = Counterpart(
    (12.0, 2.0), (4.0, 1.0), (0.6, 0.35), (2.0, 0.7), (2.0, 0.6), _COOL,
    sharpnr=(0.03, 0.06), chinr=(1.3, 0.2), b_scale=3.0, p_w3=0.6, p_w4=0.4,
)  # fmt: skip
_LPV = Counterpart(
    (20.0, 1.0), (5.0, 1.0), (0.15, 0.2), (0.4, 0.3), (0.3, 0.3), _COOL,
    b_scale=10.0, p_w3=0.8, p_w4=0.5,
)  # fmt: skip
_RRL = _star((1.1, 0.2), _HOT, 30.0)
_CEP = _star((2.0, 0.5), _WARM, 4.0)
_DSCT = _star((0.9, 0.2), _HOT, 10.0)
_ECL = _star((1.6, 0.6), _WARM, 15.0)
_ROT = _star((1.9, 0.5), _WARM, 20.0)


def _r_median(epochs: Epochs, mag: FloatArray) -> float:
    """Median true r magnitude of a variable (g - 0.5 when it has no r visit)."""
    r = mag[epochs.band == 1]
    return float(np.median(r)) if r.size else float(np.median(mag)) - 0.5


def _peak_time(rng: np.random.Generator, epochs: Epochs) -> float:
    return float(rng.uniform(epochs.start - 20.0, epochs.end - 10.0))


# --- Transients ------------------------------------------------------------------------------
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
    t0 = _peak_time(rng, epochs)
    t = epochs.mjd
    rise, fall_g = tau_rise * s, tau_fall_g * s
    flux_g = shapes.bazin(t, t0, rise, fall_g)
    flux_r = shapes.bazin(t, t0 + rng.uniform(0.5, 2.5) * s, rise, fall_g * fall_ratio_r)
    if r_bump > 0.0:  # SN Ia secondary r-band maximum ~25-30 rest-frame days after peak
        flux_r += r_bump * np.exp(-0.5 * ((t - t0 - 27.0 * s) / (7.0 * s)) ** 2)
    mag = _per_band(
        epochs, shapes.flux_to_mag(peak, flux_g), shapes.flux_to_mag(peak - peak_colour, flux_r)
    )
    truth = {"redshift": z, "tau_rise": rise, "tau_fall": fall_g, "peak_mag": peak}
    return Source(mag, (None, None), _SN_HOST.draw(rng, rng.uniform(17.5, 21.5)), truth)


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
    t_peak = _peak_time(rng, epochs)
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
    mag = _per_band(
        epochs,
        band_mag(peak, rng.uniform(0.015, 0.04)),
        band_mag(peak - colour, rng.uniform(0.0, 0.015)),
    )
    truth = {"redshift": z, "tau_rise": rise, "tau_fall": plateau, "peak_mag": peak}
    return Source(mag, (None, None), _SN_HOST.draw(rng, rng.uniform(17.5, 21.5)), truth)


# --- Stochastic ------------------------------------------------------------------------------
def _drw_mag(
    rng: np.random.Generator, epochs: Epochs, tau: float, sf_inf: float, r_scale: float
) -> FloatArray:
    """One DRW shared by both bands (same variable source), r amplitude scaled by r_scale."""
    x = shapes.damped_random_walk(rng, epochs.mjd, tau, sf_inf)
    return np.asarray(x * np.where(epochs.band == 0, 1.0, r_scale))


def qso(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Quasar: DRW with rest-frame log10 tau ~ N(2.3, 0.25) d and SF_inf ~ 0.18 mag (MacLeod et
    al. 2010, SDSS Stripe 82), 0.5 < z < 3, blue (g - r ~ 0.15), bluer when brighter."""
    z = rng.uniform(0.5, 3.0)
    tau = 10.0 ** rng.normal(2.3, 0.25) * (1.0 + z)
    sf = 10.0 ** rng.normal(-0.7, 0.2)
    g = rng.uniform(17.5, 20.0)
    mag = _per_band(epochs, g, g - rng.normal(0.15, 0.12))
    mag = mag + _drw_mag(rng, epochs, tau, sf, rng.uniform(0.7, 0.9))
    ctx = _QSO.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {"redshift": z, "tau": tau})


def agn(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Host-dominated AGN (Seyfert 1): a blue DRW nucleus (log10 tau ~ N(2.1, 0.3) d rest,
    SF_inf ~ 0.25 mag) diluted by a red host galaxy, 0.03 < z < 0.4; extended (low sgscore1)."""
    z = rng.uniform(0.03, 0.4)
    tau = 10.0 ** rng.normal(2.1, 0.3) * (1.0 + z)
    nucleus_fraction = rng.uniform(0.25, 0.75)
    total_g = rng.uniform(16.5, 19.5)
    host_colour, nucleus_colour = rng.normal(0.8, 0.1), rng.normal(0.2, 0.1)
    var = _drw_mag(rng, epochs, tau, 10.0 ** rng.normal(-0.55, 0.2), rng.uniform(0.75, 0.9))
    nucleus = nucleus_fraction * 10.0 ** (-0.4 * var)
    host = 1.0 - nucleus_fraction
    colour_shift = _per_band(epochs, 0.0, 1.0)  # r = g - colour for both components
    flux = host * 10.0 ** (0.4 * host_colour * colour_shift) + nucleus * 10.0 ** (
        0.4 * nucleus_colour * colour_shift
    )
    mag = total_g - 2.5 * np.log10(flux)
    ctx = _AGN.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {"redshift": z, "tau": tau})


def blazar(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Blazar: large-amplitude DRW (SF_inf ~ 0.45 mag, rest log10 tau ~ N(1.6, 0.4) d) plus
    Poisson flares of 0.5-2 mag (1-6 per year), colour changing little (Ruan et al. 2012)."""
    z = rng.uniform(0.1, 2.0)
    tau = 10.0 ** rng.normal(1.6, 0.4) * (1.0 + z)
    g = rng.uniform(16.5, 19.5)
    mag = _per_band(epochs, g, g - rng.uniform(0.3, 0.9))
    mag = mag + _drw_mag(rng, epochs, tau, 10.0 ** rng.normal(-0.35, 0.15), rng.uniform(0.9, 1.1))
    flares = shapes.pulses(
        rng, epochs.mjd, (epochs.start - 30, epochs.end), rng.uniform(1, 6) / 365.25,
        (0.5, 2.0), (2.0, 10.0), (5.0, 40.0),
    )  # fmt: skip
    mag = mag - 2.5 * np.log10(1.0 + (10.0**0.4 - 1.0) * flares)
    ctx = _BLAZAR.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {"redshift": z, "tau": tau})


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
        mag = quiet - boost - _per_band(epochs, 0.0, colour)
        ref = (quiet, quiet - quiet_colour)
        truth = {"period": recurrence}
    else:
        peak = rng.uniform(12.5, 17.5)
        t2, alpha = 10.0 ** rng.uniform(0.7, 2.0), rng.uniform(0.5, 1.0)
        t_peak = _peak_time(rng, epochs)
        quiet = peak + rng.uniform(8.0, 13.0)
        dt = t - t_peak
        mag = np.where(dt < 0.0, peak - dt * 2.0, peak + 2.0 * (np.maximum(dt, 0.0) / t2) ** alpha)
        mag = np.minimum(mag, quiet)
        colour = rng.uniform(0.0, 0.6) + 0.5 * np.clip(dt / t2, 0.0, 1.0)  # H-alpha in r
        mag = mag - _per_band(epochs, 0.0, colour)
        ref = (quiet, quiet - 0.5)
        truth = {"tau_fall": t2}
    ctx = _CV.draw(rng, float(ref[1]))
    return Source(np.asarray(mag, dtype=np.float64), ref, ctx, truth)


def yso(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Young stellar object: very red (g - r 1-2), DRW with tau 2-40 d and SF 0.1-0.5 mag plus
    extinction dips (A_g/A_r ~ 1.4) or accretion bursts (Cody et al. 2014; Hillenbrand 2022)."""
    g = rng.uniform(15.5, 19.5)
    mag = _per_band(epochs, g, g - rng.uniform(1.0, 2.0))
    mag = mag + _drw_mag(rng, epochs, rng.uniform(2.0, 40.0), rng.uniform(0.1, 0.5), 0.8)
    span = (epochs.start - 10.0, epochs.end)
    if rng.random() < 0.75:  # dippers: dimming by circumstellar dust
        events = shapes.pulses(
            rng, epochs.mjd, span, rng.uniform(5, 40) / 365.25, (0.3, 2.0), (0.5, 4.0), (0.5, 6.0)
        )
        mag = mag + events * _per_band(epochs, 1.0, 1.0 / 1.4)
    else:  # bursters: accretion outbursts, bluer when brighter
        events = shapes.pulses(
            rng, epochs.mjd, span, rng.uniform(2, 10) / 365.25, (0.5, 2.0), (2.0, 10.0), (5.0, 60.0)
        )
        mag = mag - events * _per_band(epochs, 1.0, 0.8)
    ctx = _YSO.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {})


# --- Periodic --------------------------------------------------------------------------------
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
    amp = _per_band(epochs, amp_g, amp_g * amp_ratio_r) * envelope
    return np.asarray(
        _per_band(epochs, g, g - colour) + amp * wave - _per_band(epochs, 0.0, colour_swing * wave)
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
    ctx = _RRL.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {"period": period})


def cep(rng: np.random.Generator, epochs: Epochs) -> Source:
    """Classical Cepheid: P log-uniform in 1.5-60 d, g amplitude 0.4-1.2 mag, sawtooth
    (R21 ~ 0.3-0.5), yellow-red and reddened (g - r 0.5-1.2) (Soszynski et al. 2008)."""
    period = 10.0 ** rng.uniform(np.log10(1.5), np.log10(60.0))
    harm = shapes.sawtooth_harmonics(rng, rng.uniform(0.3, 0.5), rng.uniform(0.15, 0.3))
    mag = _pulsator(
        rng, epochs, period, rng.uniform(0.4, 1.2), 0.7, rng.uniform(0.5, 1.2), harm, 0.2
    )
    ctx = _CEP.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {"period": period})


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
    ctx = _DSCT.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {"period": period})


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
    mag = _per_band(epochs, g, g - colour) + depth * _per_band(epochs, 1.0, depth_ratio_r)
    ctx = _ECL.draw(rng, _r_median(epochs, mag))
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
    mag = mag + _drw_mag(rng, epochs, period, 0.3 if mira else 0.5 * amp, 0.7)
    ctx = _LPV.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {"period": period})


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
    ctx = _ROT.draw(rng, _r_median(epochs, mag))
    return Source(mag, _median_reference(epochs, mag), ctx, {"period": period})


GENERATORS: dict[str, Generator] = {
    "SNIa": snia,
    "SNIbc": snibc,
    "SNII": snii,
    "SLSN": slsn,
    "QSO": qso,
    "AGN": agn,
    "Blazar": blazar,
    "CV/Nova": cv_nova,
    "YSO": yso,
    "LPV": lpv,
    "E": eclipsing,
    "DSCT": dsct,
    "RRL": rrl,
    "CEP": cep,
    "Periodic-Other": periodic_other,
}
