"""The anomaly-score columns, derived from their one definition: the anomaly-score Avro schema
(:func:`service.io.codecs.avro.output_schema`). Files (Parquet, CSV) get the Arrow schema made
here; Kafka gets the Avro records; ``tests/unit/test_scores.py`` ties both to the processor's
scored batches."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import pyarrow as pa

from models.exceptions import DataError
from service.io.codecs.avro import output_schema

_PRIMITIVES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "bytes": pa.binary(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
}
_LOGICAL: dict[str, pa.DataType] = {"timestamp-millis": pa.timestamp("ms", tz="UTC")}


def arrow_field(field: Mapping[str, Any]) -> pa.Field:
    """The Arrow field of a field of an Avro record: primitives by size (float -> float32),
    timestamp-millis as UTC milliseconds, the T of a union [null, T], an array as a list and a
    record as a struct of such fields (the explanation: a list of structs); any other type is a
    :class:`DataError`. Every column is nullable, as score files have always been (a resumed
    replay's parts written by an earlier version concatenate with new ones)."""
    return pa.field(field["name"], _arrow_type(field["name"], field["type"]))


def _arrow_type(name: str, avro_type: Any) -> pa.DataType:
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        if len(branches) != 1:
            raise DataError(f"field {name}: unions other than [null, T] have no column")
        avro_type = branches[0]
    arrow: pa.DataType | None
    if isinstance(avro_type, Mapping):
        logical = avro_type.get("logicalType")
        kind = avro_type["type"]
        if logical:
            arrow = _LOGICAL.get(logical)
        elif kind == "array":
            arrow = pa.list_(_arrow_type(name, avro_type["items"]))
        elif kind == "record":
            arrow = pa.struct([arrow_field(f) for f in avro_type["fields"]])
        else:
            arrow = _PRIMITIVES.get(kind)
    else:
        arrow = _PRIMITIVES.get(avro_type)
    if arrow is None:
        raise DataError(f"field {name}: Avro type {avro_type} has no column type")
    return arrow


@cache
def score_columns() -> pa.Schema:
    """The Arrow schema of anomaly scores in files: the Avro schema's fields in order."""
    schema = output_schema()
    if not isinstance(schema, dict):
        raise DataError("the anomaly-score schema is not a record")
    return pa.schema([arrow_field(f) for f in schema["fields"]])
