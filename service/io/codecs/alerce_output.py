"""The record ALeRCE's anomaly step publishes, as an output format (``output.format alerce``).

Their step (alercebroker/pipeline at 9a728060b; the facts are kept in
``tests/unit/upstream/alerce_step_output.json`` with a drift test) produces with
``schemas/lc_classification_step/output_ztf.avsc`` - the schema of their classifier's output,
whose canonical form is our ``schemas/ztf-lc-classifier/3`` - and its ``AnomalyParser`` fills it
per object: ``oid``, ``features`` (the input's features map passed through, NaN as null) and
``lc_classification`` with the model's anomaly scores where the classifier has probabilities
(``probabilities``: a score per category, ``hierarchical``: ``top`` and ``children``,
``class``: the category of the highest score).

Ours: one model scores an object, the one of its most probable top class, so its
``lc_classification`` holds that one score: ``probabilities`` and ``hierarchical.top`` map the
routed top class to the raw anomaly score, ``hierarchical.children`` is empty and ``class`` is the
routed top class. ``features`` is the input record's own map, read again from the input (a
decode per alert: this format costs throughput, see the benchmark's alerce row); a record
without a features map (a Rubin packet) gives null. Written schemaless, keyed by the object id.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

from fastavro import parse_schema, schemaless_writer

from service.config import Settings
from service.io.codecs.avro import Decoder, make_decoder, read_all
from service.io.codecs.decoding import input_schemas
from service.io.codecs.surveys import get_survey
from service.records import Columns, Input, Row

STEP_OUTPUT_SCHEMA = ("ztf-lc-classifier", "3")  # their output_ztf.avsc, canonically

StepOutputEncoder = Callable[[Columns, list[Row]], list[bytes]]


def step_output(
    oid: str, features: dict[str, Any] | None, top_class: str, score: float
) -> dict[str, Any]:
    """One object's record as their anomaly step publishes it (see the module docstring)."""
    return {
        "oid": oid,
        "features": features,
        "lc_classification": {
            "probabilities": {top_class: score},
            "class": top_class,
            "hierarchical": {"top": {top_class: score}, "children": {}},
        },
    }


def passed_through(record: Any) -> dict[str, Any] | None:
    """The features map of an input record as their parser passes it on (NaN -> null; values
    their schema cannot hold are left out), or None without one."""
    features = record.get("features") if isinstance(record, dict) else None
    if not isinstance(features, dict):
        return None
    out: dict[str, Any] = {}
    for name, value in features.items():
        if isinstance(value, float) and math.isnan(value):
            out[name] = None
        elif value is None or isinstance(value, bool | int | float):
            out[name] = value
    return out


def make_step_output_encoder(settings: Settings) -> StepOutputEncoder:
    """An encoder of a batch's records in their anomaly step's format; each row's input
    (``Row.origin``) is decoded again, whole, for its features."""
    survey = get_survey(settings.model.survey)
    schema = parse_schema(survey.schema(STEP_OUTPUT_SCHEMA[1]))
    decode = _whole_records(settings, survey.id_fields)
    id_fields = survey.id_fields

    def encode(columns: Columns, rows: list[Row]) -> list[bytes]:
        scores, top_class = columns["score"], columns["top_class"]
        assert isinstance(scores, list)
        assert isinstance(top_class, str)
        out = []
        for row, score in zip(rows, scores, strict=True):
            record = _record_of(row, decode, id_fields)
            buffer = io.BytesIO()
            value = step_output(row.oid, passed_through(record), top_class, score)
            schemaless_writer(buffer, schema, value)
            out.append(buffer.getvalue())
        return out

    return encode


def _whole_records(settings: Settings, id_fields: tuple[str, ...]) -> Decoder:
    """The input's decoder, reading every field (the scoring path skips the unused ones)."""
    survey = get_survey(settings.model.survey)
    schemas = input_schemas(settings.input, survey)
    generic = schemas.get(b"")
    return make_decoder(
        settings.input.format,
        parse_schema(generic) if generic is not None else None,
        {int.from_bytes(h[1:], "big"): parse_schema(s) for h, s in schemas.items() if h},
        read_all,
    )


def _record_of(row: Row, decode: Decoder, id_fields: tuple[str, ...]) -> Any:
    """The record of ``row``'s input that carries its object (an input may hold several)."""
    origin: Input | None = row.origin
    if origin is None:
        return None
    records = origin.records if origin.records is not None else decode(origin.value)
    if len(records) == 1:
        return records[0]
    for record in records:
        if isinstance(record, dict) and any(record.get(f) == row.oid for f in id_fields):
            return record
    return None
