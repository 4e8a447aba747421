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
routed top class. ``features`` is the input record's own map: an input in their schema is
spliced (its bytes up to ``lc_classification``, where the batch decoder found it or
:mod:`service.io.codecs.splice` finds it, then ours: its NaN stay NaN), any other is decoded
again (NaN as null, as their parser; ~2 ms per alert); a record without a features map (a Rubin
packet) gives null. Written schemaless, keyed by the object id.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable
from typing import Any

from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form

from service.config import Settings
from service.io.codecs.avro import (
    CONFLUENT_HEADER_SIZE,
    Decoder,
    make_decoder,
    read_all,
)
from service.io.codecs.avrowrite import write_long
from service.io.codecs.decoding import input_schemas
from service.io.codecs.splice import splice_points
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
    """An encoder of a batch's records in their anomaly step's format. An input written in
    that very schema (their classifier's current records) is spliced: its bytes up to
    ``lc_classification`` (oid and features, as they came: NaN stays NaN) and ours after them;
    any other input is decoded again, whole, for its features."""
    survey = get_survey(settings.model.survey)
    schema = parse_schema(survey.schema(STEP_OUTPUT_SCHEMA[1]))
    decode = _whole_records(settings, survey.id_fields)
    id_fields = survey.id_fields
    canonical = to_parsing_canonical_form(schema)
    spliced = {  # the headers of the input's schemas that are theirs (b"": schemaless)
        header
        for header, input_schema in input_schemas(settings.input, survey).items()
        if to_parsing_canonical_form(parse_schema(input_schema)) == canonical
    }
    if settings.input.format not in ("schemaless", "confluent"):
        spliced = set()

    def encode(columns: Columns, rows: list[Row]) -> list[bytes]:
        scores, top_class = columns["score"], columns["top_class"]
        assert isinstance(scores, list)
        assert isinstance(top_class, str)
        tail = Classification(top_class)
        skips, heads = _heads(rows, spliced)
        out = []
        for row, score, skip, head in zip(rows, scores, skips, heads, strict=True):
            if head >= 0:  # the input's oid and features, then ours
                out.append(tail.after(memoryview(_value(row))[skip:head], score))
                continue
            record = _record_of(row, decode, id_fields)
            buffer = io.BytesIO()
            value = step_output(row.oid, passed_through(record), top_class, score)
            schemaless_writer(buffer, schema, value)
            out.append(buffer.getvalue())
        return out

    return encode


def _heads(rows: list[Row], headers: set[bytes]) -> tuple[list[int], list[int]]:
    """Per row, the size of its input's header and where its ``lc_classification`` begins (-1:
    the input is not in their schema). The batch decoder found it for most (``Row.head``); the
    others are found by :func:`splice_points`."""
    skips, heads, unknown = [], [], []
    for i, row in enumerate(rows):
        origin = row.origin
        value = origin.value if origin is not None else None
        header = b"" if b"" in headers else (value or b"")[:CONFLUENT_HEADER_SIZE]
        if value is None or header not in headers:
            skips.append(0)
            heads.append(-1)
            continue
        skips.append(len(header))
        heads.append(row.head)
        if row.head < 0:
            unknown.append(i)
    if unknown:
        found = splice_points(
            [_value(rows[i]) for i in unknown],
            [skips[i] for i in unknown],
            [rows[i].oid for i in unknown],
        )
        for i, head in zip(unknown, found.tolist(), strict=True):
            heads[i] = head
    return skips, heads


def _value(row: Row) -> bytes:
    """The bytes of a row's input (one that has them)."""
    origin = row.origin
    assert origin is not None
    assert origin.value is not None
    return origin.value


class Classification:
    """Our ``lc_classification`` in their schema's bytes for one top class: ``probabilities``
    and ``hierarchical.top`` {top_class: score}, ``class`` top_class, ``hierarchical.children``
    {} - made per score around its two float32 copies."""

    __slots__ = ("_after_class", "_after_score", "_end")

    def __init__(self, top_class: str) -> None:
        name = _string(top_class)
        # probabilities: a map of one ["float"] union (branch 0); class; hierarchical: a map
        # of two unions, top (branch 0: a map of floats) and children (branch 1: a map of maps)
        self._after_class = write_long(1) + name + write_long(0)
        self._after_score = (
            write_long(0)
            + name
            + write_long(2)
            + _string("top")
            + write_long(0)
            + write_long(1)
            + name
        )
        self._end = write_long(0) + _string("children") + write_long(1) + write_long(0) * 2

    def after(self, head: bytes | memoryview, score: float) -> bytes:
        """``head`` (a record's bytes up to lc_classification) followed by ours."""
        value = _FLOAT(score)
        return b"".join((head, self._after_class, value, self._after_score, value, self._end))


def lc_classification(top_class: str, score: float) -> bytes:
    """Our ``lc_classification`` alone (see :class:`Classification`)."""
    return Classification(top_class).after(b"", score)


def _string(text: str) -> bytes:
    encoded = text.encode()
    return write_long(len(encoded)) + encoded


_FLOAT = struct.Struct("<f").pack


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
