"""What a generator returns (:class:`Source`) and the helpers the generators share: per-band
values, reference brightness, peak times and the damped random walk of both bands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models.simulate import shapes
from models.simulate.survey import Epochs, FloatArray

Generator = Callable[[np.random.Generator, Epochs], "Source"]


@dataclass(frozen=True)
class Source:
    """A simulated object before photometry."""

    mag: FloatArray  # true magnitude at each visit (inf = no flux)
    reference: tuple[float | None, float | None]  # per-band reference brightness; None = empty
    context: dict[str, float]  # catalogue and reference-image values (Counterpart.draw)
    truth: dict[str, float] = field(default_factory=dict)


def per_band(epochs: Epochs, g: FloatArray | float, r: FloatArray | float) -> FloatArray:
    """``g`` at the g-band visits, ``r`` at the r-band ones."""
    return np.asarray(np.where(epochs.band == 0, g, r), dtype=np.float64)


def median_reference(epochs: Epochs, mag: FloatArray) -> tuple[float | None, float | None]:
    """Reference brightness of a variable: its median state in each band."""
    refs: list[float | None] = []
    for b in (0, 1):
        sel = mag[epochs.band == b]
        refs.append(float(np.median(sel)) if sel.size else None)
    return refs[0], refs[1]


def r_median(epochs: Epochs, mag: FloatArray) -> float:
    """Median true r magnitude of a variable (g - 0.5 when it has no r visit)."""
    r = mag[epochs.band == 1]
    return float(np.median(r)) if r.size else float(np.median(mag)) - 0.5


def peak_time(rng: np.random.Generator, epochs: Epochs) -> float:
    """A transient's peak time, drawn from 20 days before the first visit to 10 before the last."""
    return float(rng.uniform(epochs.start - 20.0, epochs.end - 10.0))


def drw_mag(
    rng: np.random.Generator, epochs: Epochs, tau: float, sf_inf: float, r_scale: float
) -> FloatArray:
    """One DRW shared by both bands (same variable source), r amplitude scaled by r_scale."""
    x = shapes.damped_random_walk(rng, epochs.mjd, tau, sf_inf)
    return np.asarray(x * np.where(epochs.band == 0, 1.0, r_scale))
