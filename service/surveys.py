"""Survey adapters: how a decoded classifier record of a survey yields an object id, its features
and its top-level class probabilities.

ZTF (ALeRCE's ``probabilities_and_features``, keyed by ``oid``) and Rubin/LSST (the same shape
keyed by ``diaObjectId``) are registered here; a new survey is one more :class:`Survey` in
:data:`SURVEYS` plus its schema under ``schemas/`` and its bundles - the pipeline is unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from models.resources import schemas_dir
from service.exceptions import InputError, SettingsError


@dataclass(frozen=True)
class Alert:
    """What the pipeline needs from one record."""

    oid: str
    features: Mapping[str, Any]
    top_probabilities: Mapping[str, float]


@dataclass(frozen=True)
class Survey:
    name: str
    id_field: str
    schema_path: Path  # relative to schemas/

    @cached_property
    def schema(self) -> dict[str, Any]:
        """The survey's input Avro schema (unparsed JSON)."""
        with open(schemas_dir() / self.schema_path) as fh:
            loaded: dict[str, Any] = json.load(fh)
        return loaded

    def parse(self, record: Any) -> Alert:
        """Extract an :class:`Alert`; an InputError says what is wrong with the record."""
        if not isinstance(record, Mapping):
            raise InputError("invalid_record", f"expected a record, got {type(record).__name__}")
        oid = record.get(self.id_field)
        if oid is None or isinstance(oid, bool) or not isinstance(oid, str | int) or oid == "":
            raise InputError("invalid_record", f"record has no usable {self.id_field!r}")
        features = record.get("features") or {}
        if not isinstance(features, Mapping):
            raise InputError("invalid_record", "'features' is not a map")
        classification = record.get("lc_classification")
        hierarchical = (
            classification.get("hierarchical") if isinstance(classification, Mapping) else None
        )
        top = hierarchical.get("top") if isinstance(hierarchical, Mapping) else None
        if not isinstance(top, Mapping) or not top:
            raise InputError(
                "missing_probabilities", "record has no lc_classification.hierarchical.top"
            )
        return Alert(str(oid), features, top)


SURVEYS: dict[str, Survey] = {
    "ztf": Survey("ztf", "oid", Path("ztf-lc-classifier", "3", "probabilities_and_features.avsc")),
    "lsst": Survey(
        "lsst", "diaObjectId", Path("lsst-lc-classifier", "1.0", "probabilities_and_features.avsc")
    ),
}


def get_survey(name: str) -> Survey:
    try:
        return SURVEYS[name]
    except KeyError:
        raise SettingsError(f"unknown survey {name!r} (known: {', '.join(SURVEYS)})") from None


def route(top_probabilities: Mapping[str, float]) -> tuple[str, float]:
    """The top-level class with the highest probability (first one on ties) and its probability."""
    best, best_p = "", -math.inf
    for name, p in top_probabilities.items():
        if not isinstance(p, int | float) or not math.isfinite(p):
            raise InputError("missing_probabilities", f"probability of {name!r} is {p!r}")
        if p > best_p:
            best, best_p = name, float(p)
    return best, best_p


_NUMBERS = frozenset((int, float, bool))


class FeatureAssembler:
    """Writes alerts' features into rows of a float32 matrix in a bundle's feature order.

    Matched by name: missing features and nulls are NaN (undefined, as the model expects),
    unknown ones are ignored, booleans are 0/1; infinities and non-numbers are input errors.
    """

    def __init__(self, feature_names: tuple[str, ...]) -> None:
        self.feature_names = feature_names

    def row(self, features: Mapping[str, Any]) -> NDArray[np.float32]:
        values = [features.get(name) for name in self.feature_names]
        if not all(v is None or type(v) in _NUMBERS for v in values):
            name, value = next(
                (n, v)
                for n, v in zip(self.feature_names, values, strict=True)
                if v is not None and type(v) not in _NUMBERS
            )
            raise InputError("invalid_record", f"feature {name!r} is not a number: {value!r}")
        # numpy maps None to NaN and booleans to 0/1; beyond float32's range becomes inf
        row = np.array(values, dtype=np.float64).astype(np.float32)
        infinite = np.isinf(row)
        if infinite.any():
            j = int(np.argmax(infinite))
            raise InputError(
                "non_finite_feature", f"feature {self.feature_names[j]!r} is {values[j]}"
            )
        return row
