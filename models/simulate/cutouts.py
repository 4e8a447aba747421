"""The three image cutouts of a simulated Rubin alert, as FITS bytes laid out as Rubin's.

Rubin's ``ap_association`` (``packageAlerts.py``, PackageAlertsTask) cuts a square stamp of side
``bboxSize`` clamped to [``minCutoutSize`` 30, ``maxCutoutSize`` 102] pixels around the
diaSource from the difference image, the science image (calexp) and the template, calibrates it
to nJy and writes each as an astropy ``CCDData`` to FITS (``streamCcdDataToBytes``): a primary
HDU with the image (the afw ImageF array: 32-bit floats) and a local TAN WCS, an ``UNCERT``
image extension with the variance (``VarianceUncertainty``, 32-bit floats) and a ``PSFIMAGE``
extension with the PSF kernel image at the source (``computeKernelImage``: 64-bit floats).
The PSF stamp is 25 x 25 pixels: the ``stampSize`` that meas_extensions_piff's
PiffPsfDeterminerConfig sets by default. Rubin's pixels are 0.2 arcsec (Ivezić et al. 2019).

The pixels here are simulated, not Rubin's: a Gaussian PSF of FWHM 0.7 arcsec (3.5 pixels)
holding the source's flux on white noise of the measured error; only the layout and the sizes
follow Rubin. The FITS bytes are written here (2880-byte blocks of 80-character header cards,
big-endian data padded with zeros), with no FITS library needed.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.exceptions import DataError

MIN_CUTOUT: Final = 30  # ap_association PackageAlertsConfig.minCutoutSize
MAX_CUTOUT: Final = 102  # ap_association PackageAlertsConfig.maxCutoutSize
PSF_STAMP: Final = 25  # meas_extensions_piff PiffPsfDeterminerConfig: stampSize = 25
PIXEL_ARCSEC: Final = 0.2
PSF_SIGMA_PIX: Final = 0.7 / 2.3548 / PIXEL_ARCSEC
BLOCK: Final = 2880
CARD: Final = 80
KINDS: Final = ("cutoutDifference", "cutoutScience", "cutoutTemplate")

Value = bool | int | float | str


def cutout_side(bbox_size: int) -> int:
    """The side of Rubin's cutout for a diaSource of ``bboxSize`` pixels."""
    return min(max(int(bbox_size), MIN_CUTOUT), MAX_CUTOUT)


def bbox_size(snr: float) -> int:
    """A footprint's bounding box (pixels) for a point source of ``snr``: the diameter within
    which the PSF's per-pixel signal-to-noise exceeds 5, grown by 2 pixels a side (this
    simulator's model; Rubin's ``bboxSize`` comes from the detection footprint)."""
    peak = abs(snr) / (np.sqrt(np.pi) * PSF_SIGMA_PIX)
    radius = PSF_SIGMA_PIX * np.sqrt(2.0 * np.log(peak / 5.0)) if peak > 5.0 else 1.0
    return int(2 * np.ceil(radius) + 1 + 4)


def _card(key: str, value: Value) -> bytes:
    if isinstance(value, bool):
        text = f"{'T' if value else 'F':>20s}"
    elif isinstance(value, int):
        text = f"{value:>20d}"
    elif isinstance(value, float):
        number = f"{value:.13G}"
        text = f"{number if '.' in number or 'E' in number else number + '.0':>20s}"
    else:
        text = "'" + value.replace("'", "''").ljust(8) + "'"
    card = f"{key:<8s}= {text}"
    if len(card) > CARD:
        raise DataError(f"FITS card {key} too long")
    return card.ljust(CARD).encode("ascii")


def _padded(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % BLOCK)


def hdu_bytes(
    image: NDArray[np.floating], cards: list[tuple[str, Value]], extname: str | None = None
) -> bytes:
    """One FITS HDU (primary when ``extname`` is None, else an IMAGE extension) of a 2-D
    float32 or float64 image."""
    bitpix = -32 if image.dtype == np.float32 else -64
    ny, nx = image.shape
    if extname is None:
        head = [("SIMPLE", True), ("BITPIX", bitpix), ("NAXIS", 2), ("NAXIS1", nx)]
        head += [("NAXIS2", ny), ("EXTEND", True)]
    else:
        head = [("XTENSION", "IMAGE"), ("BITPIX", bitpix), ("NAXIS", 2), ("NAXIS1", nx)]
        head += [("NAXIS2", ny), ("PCOUNT", 0), ("GCOUNT", 1), ("EXTNAME", extname)]
    header = b"".join(_card(k, v) for k, v in head + cards) + b"END".ljust(CARD)
    data = np.ascontiguousarray(image, dtype=">f4" if bitpix == -32 else ">f8").tobytes()
    return _padded(header, b" ") + _padded(data, b"\x00")


def psf_image(side: int, dx: float = 0.0, dy: float = 0.0) -> NDArray[np.float64]:
    """A normalised Gaussian PSF of FWHM 0.7 arcsec on a ``side`` x ``side`` grid, centred
    (offset by ``dx``, ``dy`` pixels)."""
    axis = np.arange(side) - (side - 1) / 2.0
    g = np.exp(-0.5 * ((axis[None, :] - dx) ** 2 + (axis[:, None] - dy) ** 2) / PSF_SIGMA_PIX**2)
    return np.asarray(g / g.sum())


def cutout_fits(
    rng: np.random.Generator,
    side: int,
    flux: float,
    flux_err: float,
    ra: float,
    dec: float,
    corner: tuple[int, int],
) -> bytes:
    """A cutout as Rubin writes it: image (nJy), variance and PSF kernel HDUs; the image a
    point source of ``flux`` nJy (total) on noise such that its PSF flux error is
    ``flux_err``."""
    dx, dy = rng.uniform(-0.5, 0.5, 2)
    profile = psf_image(side, dx, dy)
    pixel_sigma = flux_err / np.sqrt(4.0 * np.pi * PSF_SIGMA_PIX**2)  # PSF-weighted error
    image = (flux * profile + rng.normal(0.0, pixel_sigma, (side, side))).astype(np.float32)
    variance = np.full((side, side), pixel_sigma**2, dtype=np.float32)
    scale = PIXEL_ARCSEC / 3600.0
    wcs: list[tuple[str, Value]] = [
        ("WCSAXES", 2), ("CRPIX1", (side + 1) / 2.0 + float(dx)),
        ("CRPIX2", (side + 1) / 2.0 + float(dy)), ("CD1_1", -scale), ("CD1_2", 0.0),
        ("CD2_1", 0.0), ("CD2_2", scale), ("CUNIT1", "deg"), ("CUNIT2", "deg"),
        ("CTYPE1", "RA---TAN"), ("CTYPE2", "DEC--TAN"), ("CRVAL1", float(ra)),
        ("CRVAL2", float(dec)), ("LONPOLE", 180.0), ("LATPOLE", float(dec)),
        ("MJDREF", 0.0), ("RADESYS", "ICRS"), ("CUTMINX", corner[0]), ("CUTMINY", corner[1]),
        ("BUNIT", "nJy"),
    ]  # fmt: skip
    return (
        hdu_bytes(image, wcs)
        + hdu_bytes(variance, [("BUNIT", "nJy2"), ("UTYPE", "VarianceUncertainty")], "UNCERT")
        + hdu_bytes(psf_image(PSF_STAMP), [], "PSFIMAGE")
    )


def parse_fits(data: bytes) -> list[tuple[dict[str, Value], NDArray[np.floating]]]:
    """The HDUs of FITS bytes written by :func:`hdu_bytes`: (header, image) each; DataError
    when the bytes are not such FITS."""
    out: list[tuple[dict[str, Value], NDArray[np.floating]]] = []
    pos = 0
    if len(data) % BLOCK:
        raise DataError(f"FITS length {len(data)} is not a multiple of {BLOCK}")
    while pos < len(data):
        header: dict[str, Value] = {}
        while True:
            if pos + CARD > len(data):
                raise DataError("FITS header without END")
            card = data[pos : pos + CARD].decode("ascii")
            pos += CARD
            if card.rstrip() == "END":
                break
            key, _, value = card.partition("= ")
            header[key.strip()] = _value(value.strip())
        pos += -pos % BLOCK
        bitpix, nx, ny = header.get("BITPIX"), header.get("NAXIS1"), header.get("NAXIS2")
        if bitpix not in (-32, -64) or not isinstance(nx, int) or not isinstance(ny, int):
            raise DataError(f"not a 2-D float image HDU: {header}")
        dtype = ">f4" if bitpix == -32 else ">f8"
        size = nx * ny * np.dtype(dtype).itemsize
        if pos + size > len(data):
            raise DataError(f"FITS data of {size} bytes cut at {len(data) - pos}")
        image = np.frombuffer(data[pos : pos + size], dtype=dtype).reshape(ny, nx)
        out.append((header, image))
        pos += size + (-size % BLOCK)
    return out


def _value(text: str) -> Value:
    if text.startswith("'"):
        return text[1:].rsplit("'", 1)[0].rstrip().replace("''", "'")
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        return float(text)
