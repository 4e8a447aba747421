"""What ALeRCE takes from catalogues and the reference image for a simulated object: sky
positions, the per-class distributions of its Pan-STARRS1, AllWISE and reference-image
counterparts (:class:`Counterpart`) and one population of them per subclass family."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAN = float("nan")


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
SN_HOST = Counterpart(
    (1.2, 5.0), (2.7, 0.5), (0.1, 0.2), (2.0, 1.0), (2.0, 0.6), _GALAXY,
    distpsnr=(1.5, 0.35), reference_offset=(1.5, 0.4), sharpnr=(0.3, 0.15), chinr=(4.0, 0.3),
    p_wise=0.6, p_w3=0.4, p_w4=0.1, p_star_neighbour=0.2,
)  # fmt: skip


QSO = Counterpart(
    (4.0, 2.5), (3.0, 0.5), (1.1, 0.2), (3.0, 0.4), (2.5, 0.3),
    ((0.15, 0.12), (0.12, 0.1), (0.08, 0.1)), distpsnr=(0.15, 0.25), p_w3=0.5, p_w4=0.25,
)  # fmt: skip
AGN = Counterpart(
    (2.0, 4.0), (3.2, 0.5), (0.7, 0.3), (2.6, 0.5), (2.3, 0.4),
    ((0.55, 0.2), (0.3, 0.1), (0.2, 0.1)), distpsnr=(0.3, 0.3), reference_offset=(0.2, 0.3),
    sharpnr=(0.2, 0.1), chinr=(3.0, 0.3), p_w3=0.6, p_w4=0.3,
)  # fmt: skip
BLAZAR = Counterpart(
    (3.0, 3.0), (3.3, 0.6), (0.85, 0.2), (2.3, 0.4), (2.2, 0.4),
    ((0.45, 0.2), (0.3, 0.12), (0.2, 0.12)), sharpnr=(0.05, 0.08), chinr=(1.5, 0.3),
    p_w3=0.6, p_w4=0.3,
)  # fmt: skip
CV = Counterpart(
    (20.0, 1.0), (1.5, 0.8), (0.15, 0.2), (0.6, 0.6), (0.5, 0.5),
    ((0.3, 0.3), (0.2, 0.2), (0.1, 0.15)), b_scale=15.0, p_wise=0.5, p_w3=0.15, p_w4=0.05,
)  # fmt: skip
YSO = Counterpart(
    (12.0, 2.0), (4.0, 1.0), (0.6, 0.35), (2.0, 0.7), (2.0, 0.6), _COOL,
    sharpnr=(0.03, 0.06), chinr=(1.3, 0.2), b_scale=3.0, p_w3=0.6, p_w4=0.4,
)  # fmt: skip
LPV = Counterpart(
    (20.0, 1.0), (5.0, 1.0), (0.15, 0.2), (0.4, 0.3), (0.3, 0.3), _COOL,
    b_scale=10.0, p_w3=0.8, p_w4=0.5,
)  # fmt: skip
RRL = _star((1.1, 0.2), _HOT, 30.0)
CEP = _star((2.0, 0.5), _WARM, 4.0)
DSCT = _star((0.9, 0.2), _HOT, 10.0)
ECL = _star((1.6, 0.6), _WARM, 15.0)
ROT = _star((1.9, 0.5), _WARM, 20.0)
