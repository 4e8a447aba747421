"""Feature preprocessing of the ALeRCE anomaly detector, fitted on training data and stored in
the bundle.

Per feature, in this order:

1. Heavy-tailed features are compressed. A feature whose training values are all positive and
   span more than two decades between its 1st and 99th percentiles gets ``log10(max(x, floor))``
   (``floor`` = its smallest positive training value, so that later zeros or negatives are clipped
   rather than undefined: the paper's "clip, then log"). A feature with values of both signs and
   such a spread gets ``asinh(x / s)`` with ``s`` its median absolute value (a log for large
   ``|x|`` that stays defined at 0). Every other feature stays linear.
   The choice is made for every column independently, from that column's own values. (The
   reference code applies the log only to columns that have non-positive values and then scales
   them with the previous column's range; we do not reproduce that.)
2. The (transformed) value is scaled with the 0.5th and 99.5th training percentiles as ``min`` and
   ``max``: ``tanh((x - min) / (max - min) - 0.5)``; in-range values land in [-0.46, 0.46], outliers
   are squashed towards +-1 instead of dominating the loss.
3. NaN (undefined feature) becomes ``NAN_VALUE = -1``, a value no finite input reaches (tanh never
   returns -1), so "missing" stays distinguishable from every measured value.

The transform is written in torch so that it runs on the scoring device, inside the batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from models.exceptions import BundleError, DataError

NAN_VALUE = -1.0
Kind = Literal["linear", "log", "asinh"]
_SPREAD_DECADES = 2.0


@dataclass(frozen=True)
class FeatureScaling:
    """Fitted preprocessing of one feature."""

    name: str
    kind: Kind
    param: float  # log: clip floor; asinh: scale s; linear: unused (0)
    low: float  # 0.5th percentile of the transformed training values
    high: float  # 99.5th percentile


def _compress(kind: Kind, param: float, x: NDArray[np.float64]) -> NDArray[np.float64]:
    if kind == "log":
        return np.asarray(np.log10(np.maximum(x, param)))
    if kind == "asinh":
        return np.asarray(np.arcsinh(x / param))
    return x


def _choose(values: NDArray[np.float64]) -> tuple[Kind, float]:
    lo, hi = np.percentile(np.abs(values), [1.0, 99.0])
    if values.min() > 0:
        if hi / max(lo, 1e-300) > 10**_SPREAD_DECADES:
            return "log", float(values.min())
        return "linear", 0.0
    scale = float(np.median(np.abs(values)))
    if scale > 0 and hi / max(lo, scale * 1e-3) > 10**_SPREAD_DECADES and values.max() > 0:
        return "asinh", scale
    return "linear", 0.0


def fit_scaling(
    features: NDArray[np.float64], names: tuple[str, ...]
) -> tuple[FeatureScaling, ...]:
    """Fit the preprocessing of every column of ``features`` (NaN = undefined)."""
    if features.ndim != 2 or features.shape[1] != len(names):
        raise DataError(f"expected a matrix with {len(names)} columns, got shape {features.shape}")
    out = []
    for j, name in enumerate(names):
        column = features[:, j]
        values = column[np.isfinite(column)]
        if values.size == 0:
            out.append(FeatureScaling(name, "linear", 0.0, 0.0, 1.0))
            continue
        kind, param = _choose(values)
        low, high = np.percentile(_compress(kind, param, values), [0.5, 99.5])
        if not high > low:
            low, high = low - 0.5, low + 0.5  # constant feature: unit range around it
        out.append(FeatureScaling(name, kind, param, float(low), float(high)))
    return tuple(out)


class Preprocessor(torch.nn.Module):
    """The fitted transform as a torch module: raw float32 features -> network inputs."""

    is_log: torch.Tensor
    is_asinh: torch.Tensor
    floor: torch.Tensor
    scale: torch.Tensor
    low: torch.Tensor
    span: torch.Tensor

    def __init__(self, scaling: tuple[FeatureScaling, ...]) -> None:
        super().__init__()
        self.scaling = scaling
        kinds = [s.kind for s in scaling]

        def mask(kind: str) -> torch.Tensor:
            return torch.tensor([k == kind for k in kinds], dtype=torch.bool)

        def values(attr: str) -> torch.Tensor:
            return torch.tensor([getattr(s, attr) for s in scaling], dtype=torch.float32)

        self.register_buffer("is_log", mask("log"))
        self.register_buffer("is_asinh", mask("asinh"))
        params = values("param")
        self.register_buffer("floor", torch.where(mask("log"), params, torch.ones_like(params)))
        self.register_buffer("scale", torch.where(mask("asinh"), params, torch.ones_like(params)))
        self.register_buffer("low", values("low"))
        self.register_buffer("span", values("high") - values("low"))

    @property
    def n_features(self) -> int:
        return len(self.scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        missing = ~torch.isfinite(x)
        x = torch.where(missing, torch.zeros_like(x), x)
        x = torch.where(self.is_log, torch.log10(torch.maximum(x, self.floor)), x)
        x = torch.where(self.is_asinh, torch.asinh(x / self.scale), x)
        x = torch.tanh((x - self.low) / self.span - 0.5)
        return torch.where(missing, torch.full_like(x, NAN_VALUE), x)

    def to_manifest(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.scaling]

    @classmethod
    def from_manifest(cls, entries: list[dict[str, Any]]) -> Preprocessor:
        try:
            scaling = tuple(
                FeatureScaling(
                    name=str(e["name"]),
                    kind=e["kind"],
                    param=float(e["param"]),
                    low=float(e["low"]),
                    high=float(e["high"]),
                )
                for e in entries
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"malformed preprocessing entry in manifest: {exc}") from exc
        bad = [s.name for s in scaling if s.kind not in ("linear", "log", "asinh")]
        if bad:
            raise BundleError(f"unknown preprocessing kind for features {bad}")
        return cls(scaling)
