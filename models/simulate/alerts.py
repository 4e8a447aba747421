"""The simulated objects as the records ALeRCE's light-curve classifier step publishes
(schema ``schemas/ztf-lc-classifier/1.0``): the input of the streaming service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

from models.resources import schemas_dir
from models.table import AlertTable
from models.taxonomy import ALL_SUBCLASSES, SUBCLASSES, TOP_CLASSES

INPUT_SCHEMA_PATH = Path("ztf-lc-classifier", "1.0", "probabilities_and_features.avsc")


@cache
def input_schema() -> dict[str, Any]:
    """The parsed ZTF input schema (probabilities_and_features)."""
    with open(schemas_dir() / INPUT_SCHEMA_PATH) as fh:
        parsed = fastavro.parse_schema(json.load(fh))
    if not isinstance(parsed, dict):
        raise TypeError(f"{INPUT_SCHEMA_PATH} is not an Avro record schema")
    return parsed


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def input_records(table: AlertTable) -> Iterator[dict[str, Any]]:
    """One input record per object, in table order; undefined features are null."""
    top_index = {t: i for i, t in enumerate(TOP_CLASSES)}
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
            "oid": str(table.oid[i]),
            "features": {
                name: _finite_or_none(v)
                for name, v in zip(table.feature_names, table.features[i], strict=True)
            },
            "lc_classification": {
                "probabilities": {s: float(p) for s, p in zip(ALL_SUBCLASSES, p_sub, strict=True)},
                "class": ALL_SUBCLASSES[best],
                "hierarchical": {
                    "top": {t: float(p_top[top_index[t]]) for t in TOP_CLASSES},
                    "children": children,
                },
            },
        }


def write_avro(table: AlertTable, path: Path) -> None:
    """Write the input records as an Avro object-container file (schema embedded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fastavro.writer(fh, input_schema(), input_records(table), codec="deflate")
