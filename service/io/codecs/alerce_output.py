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
spliced (its bytes up to ``lc_classification``, found by a compiled skip, then ours: its NaN
stay NaN), any other is decoded again (NaN as null, as their parser; ~2 ms per alert); a record
without a features map (a Rubin packet) gives null. Written schemaless, keyed by the object id.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from numpy.typing import NDArray

from service.config import Settings
from service.io.codecs.avro import (
    CONFLUENT_HEADER_SIZE,
    Decoder,
    make_decoder,
    read_all,
    write_long,
)
from service.io.codecs.batchdecode import compiled, inlined
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
        out = []
        for row, score in zip(rows, scores, strict=True):
            fast = _spliced(row, spliced, top_class, score)
            if fast is not None:
                out.append(fast)
                continue
            record = _record_of(row, decode, id_fields)
            buffer = io.BytesIO()
            value = step_output(row.oid, passed_through(record), top_class, score)
            schemaless_writer(buffer, schema, value)
            out.append(buffer.getvalue())
        return out

    return encode


def _spliced(row: Row, headers: set[bytes], top_class: str, score: float) -> bytes | None:
    """Row's record made from its input's bytes, when the input is in their schema (one
    record, the row's object); None otherwise."""
    origin = row.origin
    if origin is None or origin.value is None or not headers:
        return None
    value = origin.value
    header = value[:CONFLUENT_HEADER_SIZE] if b"" not in headers else b""
    if header not in headers:
        return None
    body = np.frombuffer(value, np.uint8)[len(header) :]
    end = features_end(body)
    if end < 0 or not _oid_is(body, row.oid):
        return None
    start = len(header)
    return value[start : start + end] + lc_classification(top_class, score)


def _oid_is(body: NDArray[np.uint8], oid: str) -> bool:
    """The record's first field (its oid) is ``oid``."""
    encoded = oid.encode()
    prefix = write_long(len(encoded)) + encoded
    return bytes(body[: len(prefix)]) == prefix


def lc_classification(top_class: str, score: float) -> bytes:
    """Our ``lc_classification`` in their schema's bytes: ``probabilities`` and
    ``hierarchical.top`` {top_class: score}, ``class`` top_class, ``hierarchical.children`` {}."""
    name = _string(top_class)
    score_bytes = _FLOAT(score)
    # probabilities: a map of one ["float"] union (branch 0), then class
    return (
        write_long(1)
        + name
        + write_long(0)
        + score_bytes
        + write_long(0)
        + name
        + write_long(2)
        + _string("top")
        + write_long(0)  # union branch: map of floats
        + write_long(1)
        + name
        + score_bytes
        + write_long(0)
        + _string("children")
        + write_long(1)  # union branch: map of maps
        + write_long(0)
        + write_long(0)
    )


def _string(text: str) -> bytes:
    encoded = text.encode()
    return write_long(len(encoded)) + encoded


_FLOAT = struct.Struct("<f").pack


@inlined
def _long(body: NDArray[np.uint8], p: int) -> tuple[int, int]:
    """An Avro long at ``p`` and the position after it; (0, -1) past the end."""
    shift, acc = 0, 0
    while p < len(body) and shift < 64:
        x = int(body[p])
        p += 1
        acc |= (x & 0x7F) << shift
        if x < 0x80:
            return (acc >> 1) ^ -(acc & 1), p
        shift += 7
    return 0, -1


@compiled
def features_end(body: NDArray[np.uint8]) -> int:
    """Where a record of their schema's ``lc_classification`` begins (after the oid string
    and the features map or null); -1 if the bytes do not hold that."""
    n, p = _long(body, 0)
    if p < 0 or n < 0:
        return -1
    p += n
    branch, p = _long(body, p)
    if p < 0 or branch not in (0, 1):
        return -1
    if branch == 1:  # null
        return int(p)
    while True:
        count, p = _long(body, p)
        if p < 0:
            return -1
        if count == 0:
            return int(p) if p <= len(body) else -1
        if count < 0:  # a block with its size in bytes
            size, p = _long(body, p)
            if p < 0 or size < 0:
                return -1
            p += size
            continue
        for _ in range(count):
            k, p = _long(body, p)
            if p < 0 or k < 0:
                return -1
            p += k
            kind, p = _long(body, p)
            if p < 0:
                return -1
            if kind == 0:  # boolean
                p += 1
            elif kind == 1:  # float
                p += 4
            elif kind == 3:  # int
                _, p = _long(body, p)
                if p < 0:
                    return -1
            elif kind != 2:  # null
                return -1
            if p > len(body):
                return -1


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
