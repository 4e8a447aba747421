"""Feature preprocessing of the ALeRCE anomaly detector, stored in the bundle.

Every feature gets ``tanh((t(x) - low) / (high - low) - 0.5)``, where ``t`` is the identity
(``linear``), ``log10(max(x, floor))`` (``log``) or ``asinh(x / s)`` (``asinh``), and an undefined
(non-finite) value gets a fixed ``missing`` value. In-range values land in [-0.46, 0.46]; outliers
are squashed towards +-1 instead of dominating the loss. The transform is written in torch so that
it runs on the scoring device, inside the batch. Two ways to set it:

``paper`` (:func:`paper_scaling`): the reference code's fixed scales per feature family
(:mod:`models.paper`, natural log there; the base cancels in the ratio). A log family is
``log`` with floor 0: non-positive values go to ``log(0) = -inf`` and so to -1. A clip-and-log
family is ``log`` with the family's low bound as floor. ``low``/``high`` are the family's bounds
(their logarithms for the log families); ``missing = -1.1``. The reference applies its log branch
only to columns whose minimum is <= 0 and then scales them with the previous column's range; that
is a bug we do not reproduce.

``fitted`` (:func:`fit_scaling`), per feature from its own training values: a feature whose values
are all positive and span more than two decades between its 1st and 99th percentiles gets ``log``
with ``floor`` = its smallest positive training value (later zeros or negatives are clipped); one
with values of both signs and such a spread gets ``asinh`` with ``s`` its median absolute value;
every other feature stays linear. ``low``/``high`` are the 0.5th and 99.5th percentiles of the
transformed training values; ``missing = -1``, a value no finite input reaches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import NDArray

from models.exceptions import BundleError, DataError
from models.features import paper_family
from models.paper import CLIP_LOG_FAMILIES, FAMILY_SCALES, LOG_FAMILIES, MISSING_VALUE

NAN_VALUE = -1.0  # the missing value of the fitted preprocessing
Kind = Literal["linear", "log", "asinh"]
_SPREAD_DECADES = 2.0


@dataclass(frozen=True)
class FeatureScaling:
    """Fitted preprocessing of one feature."""

    name: str
    kind: Kind
    param: float  # log: clip floor; asinh: scale s; linear: unused (0)
    low: float  # transformed value mapped to tanh(-0.5)
    high: float  # transformed value mapped to tanh(0.5)
    missing: float = NAN_VALUE  # network input of an undefined value


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


def paper_scaling(
    names: tuple[str, ...],
    *,
    reference_bugs: frozenset[str] = frozenset(),
    features: NDArray[np.float64] | None = None,
) -> tuple[FeatureScaling, ...]:
    """The reference's fixed preprocessing of features named either way (models.features).

    ``reference_bugs`` puts the reference's own behaviour back, only to measure what fixing it
    changes (models.configurations): ``first-match`` gives a feature the first family whose name
    occurs in it; ``log-branch`` logs a log-family column only when its smallest value in
    ``features`` (the rows the model is fitted on; the reference decides per table it
    preprocesses) is <= 0 and otherwise leaves it linear with the range the previous column left
    behind (the natural-log bounds of a log family, the plain bounds of a linear one), in the
    order of ``names``."""
    first_match = "first-match" in reference_bugs
    unknown = [n for n in names if paper_family(n, first_match=first_match) is None]
    if unknown:
        raise DataError(
            f"the paper's preprocessing has no scale for {len(unknown)} features "
            f"({', '.join(unknown[:5])}{'...' if len(unknown) > 5 else ''}); select the paper's "
            "features first"
        )
    log_branch = "log-branch" in reference_bugs
    if log_branch and (features is None or features.shape[1] != len(names)):
        raise DataError("the reference's log branch needs the fitted rows of every feature")
    out = []
    previous: tuple[float, float] | None = None  # the reference's range left from the last column
    for j, name in enumerate(names):
        family = paper_family(name, first_match=first_match)
        assert family is not None
        low, high = FAMILY_SCALES[family]
        if family in LOG_FAMILIES and log_branch and not _has_non_positive(features, j):
            if previous is None:
                raise DataError(f"the reference's log branch fails on a first column {name!r}")
            out.append(FeatureScaling(name, "linear", 0.0, *previous, MISSING_VALUE))
        elif family in LOG_FAMILIES or family in CLIP_LOG_FAMILIES:
            floor = low if family in CLIP_LOG_FAMILIES else 0.0
            log_low, log_high = float(np.log10(low)), float(np.log10(high))
            out.append(FeatureScaling(name, "log", floor, log_low, log_high, MISSING_VALUE))
            previous = (float(np.log(low)), float(np.log(high)))
        else:
            out.append(FeatureScaling(name, "linear", 0.0, low, high, MISSING_VALUE))
            previous = (low, high)
    return tuple(out)


def _has_non_positive(features: NDArray[np.float64] | None, column: int) -> bool:
    """The reference's test ``column.min() <= 0`` (pandas' min skips NaN; all NaN: False)."""
    assert features is not None
    values = features[:, column]
    values = values[~np.isnan(values)]
    return bool(values.size) and bool(values.min() <= 0.0)


class Preprocessor(torch.nn.Module):
    """The fitted transform as a torch module: raw float32 features -> network inputs."""

    log_columns: torch.Tensor
    asinh_columns: torch.Tensor
    floor: torch.Tensor
    scale: torch.Tensor
    low: torch.Tensor
    span: torch.Tensor
    missing: torch.Tensor

    def __init__(self, scaling: tuple[FeatureScaling, ...]) -> None:
        super().__init__()
        self.scaling = scaling
        kinds = [s.kind for s in scaling]

        def columns(kind: str) -> torch.Tensor:
            return torch.tensor([i for i, k in enumerate(kinds) if k == kind], dtype=torch.long)

        def values(attr: str, kind: str | None = None) -> torch.Tensor:
            chosen = [s for s in scaling if kind is None or s.kind == kind]
            return torch.tensor([getattr(s, attr) for s in chosen], dtype=torch.float32)

        # the transforms run on their own columns only (the logarithms are most of the cost)
        self.register_buffer("log_columns", columns("log"))
        self.register_buffer("asinh_columns", columns("asinh"))
        self.register_buffer("floor", values("param", "log"))
        self.register_buffer("scale", values("param", "asinh"))
        self.register_buffer("low", values("low"))
        self.register_buffer("span", values("high") - values("low"))
        self.register_buffer("missing", values("missing"))

    @property
    def n_features(self) -> int:
        return len(self.scaling)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Undefined (non-finite) values -> 0 for the transforms, then their ``missing`` value;
        log: log10(max(x, floor)); asinh: asinh(x / scale); then every column
        tanh((x - low) / span - 0.5)."""
        missing = ~torch.isfinite(x)
        x = torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        if len(self.log_columns):
            logs = torch.maximum(x.index_select(1, self.log_columns), self.floor)
            x.index_copy_(1, self.log_columns, torch.log10(logs))
        if len(self.asinh_columns):
            scaled = x.index_select(1, self.asinh_columns) / self.scale
            x.index_copy_(1, self.asinh_columns, torch.asinh(scaled))
        x = torch.tanh((x - self.low) / self.span - 0.5)
        return torch.where(missing, self.missing.expand_as(x), x)

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
                    missing=float(e.get("missing", NAN_VALUE)),
                )
                for e in entries
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"malformed preprocessing entry in manifest: {exc}") from exc
        bad = [s.name for s in scaling if s.kind not in ("linear", "log", "asinh")]
        if bad:
            raise BundleError(f"unknown preprocessing kind for features {bad}")
        return cls(scaling)


def preprocess(preprocessor: Preprocessor, features: NDArray[np.float64]) -> NDArray[np.float64]:
    """Network inputs of raw features (NaN = undefined) as float64, computed on the CPU in
    float32 chunks of 128 rows (the scoring path's layout, models.scoring)."""
    n = features.shape[0]
    padded = np.zeros((-(-n // 128) * 128, features.shape[1]), np.float32)
    padded[:n] = features
    with torch.inference_mode():
        x = preprocessor(torch.from_numpy(padded))
    return np.asarray(x.numpy()[:n], dtype=np.float64)
