"""The objects of a feature table (:mod:`models.table`) as the records ALeRCE's light-curve
classifier step publishes (``schemas/ztf-lc-classifier/<version>``): the input of the streaming
service, for the demo, tests and benchmarks, and ``simulate --avro``.

Version 3 (current, the default): keyed by ``oid``, features as a map with today's names.
Version 2: keyed by ``aid``, the map with the 2023 names (features renamed back; features that
exist only since 2024 are left out, those only of 2023 are null). Version 1: keyed by ``aid``,
features as a record with every one of the 178 fields of 2023, null where undefined or not
computed any more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Final

import fastavro
import numpy as np

from models.exceptions import ConfigurationError
from models.features import canonical_name, name_2023, ztf_feature_names
from models.resources import schemas_dir
from models.table import AlertTable
from models.taxonomy import ALL_SUBCLASSES, SUBCLASSES, TOP_CLASSES

RECORD_VERSIONS: Final = ("1", "2", "3")
CURRENT_VERSION: Final = "3"


def input_schema_path(version: str = CURRENT_VERSION) -> Path:
    """The schema of a record version, relative to ``schemas/``."""
    check_version(version)
    return Path("ztf-lc-classifier", version, "probabilities_and_features.avsc")


def check_version(version: str) -> None:
    if version not in RECORD_VERSIONS:
        known = ", ".join(RECORD_VERSIONS)
        raise ConfigurationError(f"unknown ALeRCE record version {version!r} (known: {known})")


@cache
def input_schema(version: str = CURRENT_VERSION) -> dict[str, Any]:
    """The parsed schema of a ZTF classifier-record version (probabilities_and_features)."""
    with open(schemas_dir() / input_schema_path(version)) as fh:
        parsed = fastavro.parse_schema(json.load(fh))
    if not isinstance(parsed, dict):
        raise TypeError(f"{input_schema_path(version)} is not an Avro record schema")
    return parsed


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _features(names: tuple[str, ...], row: np.ndarray, version: str) -> dict[str, float | None]:
    """The feature map (version 3: today's names; 2 and 1: the 2023 names, every 2023 field)."""
    today = {name: _finite_or_none(v) for name, v in zip(names, row, strict=True)}
    if version == CURRENT_VERSION:
        return today
    renamed = {name_2023(name): value for name, value in today.items()}
    return {old: renamed.get(old) for old in ztf_feature_names("2023")}


def input_records(table: AlertTable, version: str = CURRENT_VERSION) -> Iterator[dict[str, Any]]:
    """One classifier record of ``version`` per object, in table order; undefined features are
    null. The table's features carry today's names (a 2023-named table is renamed first)."""
    check_version(version)
    names = tuple(canonical_name(n) for n in table.feature_names)
    top_index = {t: i for i, t in enumerate(TOP_CLASSES)}
    key = "oid" if version == CURRENT_VERSION else "aid"
    for i in range(len(table)):
        p_top = table.prob_top[i]
        p_sub = table.prob_subclass[i]
        children: dict[str, dict[str, float]] = {}
        for top in TOP_CLASSES:
            denominator = p_top[top_index[top]]
            children[top] = {
                s: float(p_sub[ALL_SUBCLASSES.index(s)] / denominator) if denominator > 0 else 0.0
                for s in SUBCLASSES[top]
            }
        best = int(np.argmax(p_sub))
        yield {
            key: str(table.oid[i]),
            "features": _features(names, table.features[i], version),
            "lc_classification": {
                "probabilities": {s: float(p) for s, p in zip(ALL_SUBCLASSES, p_sub, strict=True)},
                "class": ALL_SUBCLASSES[best],
                "hierarchical": {
                    "top": {t: float(p_top[top_index[t]]) for t in TOP_CLASSES},
                    "children": children,
                },
            },
        }


def write_avro(table: AlertTable, path: Path, version: str = CURRENT_VERSION) -> None:
    """Write the records of ``version`` as an Avro object-container file (schema embedded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fastavro.writer(fh, input_schema(version), input_records(table, version), codec="deflate")
