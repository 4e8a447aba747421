"""The labeled feature table (Parquet) that the simulator writes and training, evaluation and
offline scoring read.

Columns: ``oid``, ``subclass`` and ``top_class`` (labels), one float column per feature,
``prob_top_<Top>`` and ``prob_<Subclass>`` (classifier probabilities), ``pred_top_class`` and
``pred_class``, and optional ``truth_<param>`` columns with simulation parameters. The ordered
feature names and the producer's settings are kept in the Parquet key-value metadata under
``alert_anomaly``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from models.exceptions import DataError
from models.taxonomy import ALL_SUBCLASSES, TOP_CLASSES

METADATA_KEY = b"alert_anomaly"
LABEL_COLUMNS = ("oid", "subclass", "top_class", "pred_top_class", "pred_class")
TOP_PROB_PREFIX = "prob_top_"
PROB_PREFIX = "prob_"
TRUTH_PREFIX = "truth_"


@dataclass(frozen=True)
class AlertTable:
    """Objects with features, labels and light-curve classifier probabilities."""

    oid: NDArray[np.str_]
    subclass: NDArray[np.str_]
    top_class: NDArray[np.str_]
    features: NDArray[np.float64]  # (n, len(feature_names)), NaN = undefined
    feature_names: tuple[str, ...]
    prob_top: NDArray[np.float64]  # (n, 3), columns = TOP_CLASSES
    prob_subclass: NDArray[np.float64]  # (n, 15), columns = ALL_SUBCLASSES
    truth: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.oid.size)

    def take(self, index: NDArray[np.intp] | NDArray[np.bool_]) -> AlertTable:
        """Rows selected by an integer index or a boolean mask."""
        return AlertTable(
            self.oid[index],
            self.subclass[index],
            self.top_class[index],
            self.features[index],
            self.feature_names,
            self.prob_top[index],
            self.prob_subclass[index],
            {k: v[index] for k, v in self.truth.items()},
            self.metadata,
        )

    def columns(self, names: tuple[str, ...] | list[str]) -> NDArray[np.float64]:
        """Feature matrix in the order of ``names``; features the table lacks are NaN."""
        position = {n: i for i, n in enumerate(self.feature_names)}
        out = np.full((len(self), len(names)), np.nan)
        for j, name in enumerate(names):
            if name in position:
                out[:, j] = self.features[:, position[name]]
        return out

    def predicted_top(self) -> NDArray[np.str_]:
        """Top-level class with the highest classifier probability, per row."""
        labels: NDArray[np.str_] = np.asarray(TOP_CLASSES)[self.prob_top.argmax(axis=1)]
        return labels

    def predicted_subclass(self) -> NDArray[np.str_]:
        """Subclass with the highest classifier probability, per row."""
        labels: NDArray[np.str_] = np.asarray(ALL_SUBCLASSES)[self.prob_subclass.argmax(axis=1)]
        return labels


def write_table(table: AlertTable, path: Path) -> None:
    """Write ``table`` as Parquet (zstd, float32 features)."""
    columns: dict[str, Any] = {
        "oid": table.oid.astype(str),
        "subclass": table.subclass.astype(str),
        "top_class": table.top_class.astype(str),
    }
    for j, name in enumerate(table.feature_names):
        columns[name] = table.features[:, j].astype(np.float32)
    for j, name in enumerate(TOP_CLASSES):
        columns[TOP_PROB_PREFIX + name] = table.prob_top[:, j].astype(np.float32)
    for j, name in enumerate(ALL_SUBCLASSES):
        columns[PROB_PREFIX + name] = table.prob_subclass[:, j].astype(np.float32)
    columns["pred_top_class"] = table.predicted_top()
    columns["pred_class"] = table.predicted_subclass()
    for name, values in table.truth.items():
        columns[TRUTH_PREFIX + name] = values.astype(np.float32)
    arrow = pa.table(columns)
    meta = {**table.metadata, "feature_names": list(table.feature_names)}
    arrow = arrow.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(arrow, path, compression="zstd")


def _feature_names(arrow: pa.Table, meta: dict[str, Any]) -> tuple[str, ...]:
    if "feature_names" in meta:
        return tuple(meta["feature_names"])
    reserved = (TOP_PROB_PREFIX, PROB_PREFIX, TRUTH_PREFIX)
    return tuple(
        name
        for name in arrow.column_names
        if name not in LABEL_COLUMNS
        and not name.startswith(reserved)
        and pa.types.is_floating(arrow.schema.field(name).type)
    )


def read_csv_table(source: Path | pa.NativeFile) -> pa.Table:
    """A CSV table (a path or an open file) with the Parquet layout's columns; numeric columns
    become float64."""
    arrow = pa_csv.read_csv(source)
    for i, column in enumerate(arrow.schema):
        if column.name not in LABEL_COLUMNS and pa.types.is_integer(column.type):
            arrow = arrow.set_column(i, column.name, arrow.column(i).cast(pa.float64()))
    return arrow


def read_table(path: Path) -> AlertTable:
    """Read a feature table (Parquet, or CSV with the same columns); raise DataError with the
    reason when it is unusable."""
    if not path.is_file():
        raise DataError(f"feature table {path} does not exist")
    kind = "CSV" if path.suffix.lower() == ".csv" else "Parquet"
    try:
        arrow = read_csv_table(path) if kind == "CSV" else pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read {path} as {kind}: {exc}") from exc
    return table_from_arrow(arrow, str(path))


def table_from_arrow(arrow: pa.Table, where: str) -> AlertTable:
    """The feature table held by ``arrow`` (read from ``where``, named in errors)."""
    raw_meta = (arrow.schema.metadata or {}).get(METADATA_KEY)
    meta: dict[str, Any] = json.loads(raw_meta) if raw_meta else {}
    names = _feature_names(arrow, meta)
    missing = [c for c in ("oid", *names) if c not in arrow.column_names]
    if missing:
        raise DataError(f"{where} lacks columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    n = arrow.num_rows

    def strings(name: str) -> NDArray[np.str_]:
        values = arrow.column(name).to_pylist() if name in arrow.column_names else [""] * n
        out: NDArray[np.str_] = np.asarray(values, dtype=np.str_)
        return out

    def floats(names_: list[str]) -> NDArray[np.float64]:
        out = np.full((n, len(names_)), np.nan)
        for j, name in enumerate(names_):
            if name in arrow.column_names:
                out[:, j] = arrow.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        return out

    truth = {
        c[len(TRUTH_PREFIX) :]: floats([c])[:, 0]
        for c in arrow.column_names
        if c.startswith(TRUTH_PREFIX)
    }
    return AlertTable(
        oid=strings("oid"),
        subclass=strings("subclass"),
        top_class=strings("top_class"),
        features=floats(list(names)),
        feature_names=names,
        prob_top=floats([TOP_PROB_PREFIX + t for t in TOP_CLASSES]),
        prob_subclass=floats([PROB_PREFIX + s for s in ALL_SUBCLASSES]),
        truth=truth,
        metadata={k: v for k, v in meta.items() if k != "feature_names"},
    )
