"""Input decoding in every configured format, failures as InputError, score encoding."""

from __future__ import annotations

import io
import json
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.resources import schemas_dir
from service.exceptions import InputError, SettingsError
from service.io.codecs.avro import (
    OUTPUT_SCHEMA_PATH,
    decode_output,
    make_batch_encoder,
    make_decoder,
    make_encoder,
    output_schema,
)
from service.io.codecs.avrowrite import RecordWriter
from service.io.codecs.surveys import SURVEYS
from service.records import records_of
from tests.unit.alerce_records import base_record

SCHEMA = fastavro.parse_schema(SURVEYS["ztf"].schema())
RECORDS = [base_record("ztf", "3", seed=s) for s in range(3)]
RECORD = RECORDS[0]
SCORE = json.loads(
    (schemas_dir() / OUTPUT_SCHEMA_PATH.parent / "samples" / "periodic-mcdsvdd.json").read_text()
)


def schemaless(record: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, SCHEMA, record)
    return buffer.getvalue()


def container(records: list[dict[str, object]]) -> bytes:
    buffer = io.BytesIO()
    fastavro.writer(buffer, SCHEMA, records)
    return buffer.getvalue()


def test_schemaless() -> None:
    (record,) = make_decoder("schemaless", SCHEMA)(schemaless(RECORD))
    assert record["oid"] == RECORD["oid"]
    assert record["lc_classification"]["class"] == RECORD["lc_classification"]["class"]


def test_container_with_several_records() -> None:
    records = RECORDS
    decoded = make_decoder("container")(container(records))
    assert [r["oid"] for r in decoded] == [r["oid"] for r in records]


def test_confluent_wire_format() -> None:
    value = struct.pack(">bI", 0, 42) + schemaless(RECORD)
    (record,) = make_decoder("confluent", confluent={42: SCHEMA})(value)
    assert record["oid"] == RECORD["oid"]
    with pytest.raises(InputError, match="schema id 7 is not configured") as info:
        make_decoder("confluent", confluent={42: SCHEMA})(struct.pack(">bI", 0, 7) + b"x")
    assert info.value.reason == "unknown_schema"
    with pytest.raises(InputError, match="not in Confluent wire format"):
        make_decoder("confluent", confluent={42: SCHEMA})(schemaless(RECORD))


def test_json() -> None:
    (record,) = make_decoder("json")(json.dumps(RECORD).encode())
    assert record == RECORD


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        ("schemaless", b""),
        ("schemaless", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
        ("schemaless", schemaless(RECORD) + b"trailing"),
        ("schemaless", schemaless(RECORD)[:40]),
        ("container", schemaless(RECORD)),
        ("container", container([RECORD])[:-20]),
        ("json", b"{not json"),
        ("json", b"\xff\xfe"),
    ],
)
def test_garbage_is_an_input_error_never_a_crash(fmt: str, value: bytes) -> None:
    decode = make_decoder(fmt, SCHEMA)  # type: ignore[arg-type]
    with pytest.raises(InputError) as info:
        decode(value)
    assert info.value.reason == "undecodable"


@pytest.mark.parametrize("fmt", ["schemaless", "json", "confluent"])
def test_scores_round_trip(fmt: str) -> None:
    encode = make_encoder(fmt, schema_id=3)  # type: ignore[arg-type]
    value = encode(SCORE)
    if fmt == "confluent":
        assert value[:5] == struct.pack(">bI", 0, 3)
    back = decode_output(value, fmt)  # type: ignore[arg-type]
    assert back["oid"] == SCORE["oid"]
    assert back["nearest_subclass"] == "RRL"
    assert back["source_offset"] == SCORE["source_offset"]
    assert back["score"] == pytest.approx(SCORE["score"], rel=1e-6)


SCORE_SCHEMA = json.loads((schemas_dir() / OUTPUT_SCHEMA_PATH).read_text())
SCORE_FIELDS = [f["name"] for f in SCORE_SCHEMA["fields"]]
TEXT = st.text(max_size=30)
LONG = st.integers(-(2**63), 2**63 - 1)
SCORE_RECORDS = st.fixed_dictionaries(
    {
        "oid": TEXT,
        "survey": TEXT,
        "top_class": TEXT,
        "top_class_probability": st.floats(width=32),
        "scorer": TEXT,
        "score": st.floats(width=32),
        "percentile": st.floats(width=32),
        "nearest_subclass": st.none() | TEXT,
        "model_version": TEXT,
        "model_checksum": TEXT,
        "scored_at": LONG,
        "source_topic": TEXT,
        "source_partition": st.integers(-(2**31), 2**31 - 1),
        "source_offset": LONG,
        "source_timestamp": st.none() | LONG,
        "service_version": TEXT,
        "feature_coverage": st.none() | st.floats(0, 1, width=32),
        "explanation": st.lists(
            st.fixed_dictionaries({"feature": TEXT, "contribution": st.floats(width=32)}),
            max_size=4,
        ),
        "reranked_percentile": st.none() | st.floats(0, 100, width=32),
        "reranker_expert": st.none() | TEXT,
        "reranker_version": st.none() | TEXT,
        "reranker_checksum": st.none() | TEXT,
    }
)


def fastavro_bytes(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, output_schema(), record)
    return buffer.getvalue()


def test_the_score_writer_writes_what_fastavro_writes_for_every_sample() -> None:
    encode = make_encoder("schemaless")
    samples = sorted((schemas_dir() / OUTPUT_SCHEMA_PATH.parent / "samples").glob("*.json"))
    assert samples
    for path in samples:
        record = json.loads(path.read_text())
        assert encode(record) == fastavro_bytes(record), path.name


@settings(max_examples=500, derandomize=True, deadline=None)
@given(SCORE_RECORDS)
def test_the_score_writer_writes_what_fastavro_writes_for_fuzzed_records(
    record: dict[str, Any],
) -> None:
    assert RecordWriter(SCORE_SCHEMA)(record) == fastavro_bytes(record)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(SCORE_RECORDS, min_size=1, max_size=12), st.sets(st.sampled_from(SCORE_FIELDS)))
def test_a_batch_from_columns_is_its_records_encoded_one_by_one(
    records: list[dict[str, Any]], shared: set[str]
) -> None:
    """Columns: per field a list, or (``shared``) the first record's value for the batch (an
    array shared by the batch is a tuple: a list is a column)."""

    def one(value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    columns = {
        name: one(records[0][name]) if name in shared else [r[name] for r in records]
        for name in SCORE_FIELDS
    }
    expected = records_of(columns, len(records))
    for fmt, schema_id in (("schemaless", None), ("confluent", 3), ("json", None)):
        encode = make_encoder(fmt, schema_id)
        batch = make_batch_encoder(fmt, schema_id)(columns, len(records))
        assert batch == [encode(r) for r in expected]
    assert make_batch_encoder("schemaless")(columns, len(records)) == [
        fastavro_bytes(r) for r in expected
    ]


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_readers_of_previous_minor_versions_still_decode_scores(version: str) -> None:
    """1.1 appends feature_coverage, 1.2 explanation, 1.3 the re-ranker's fields: a reader
    with an older schema resolves 1.3 data, and even a schemaless read with the old schema
    alone gets every old field right (the new ones come last); the new reader decodes old
    records with the new fields' defaults (null coverage and re-ranker, empty explanation)."""
    path = schemas_dir() / "anomaly-score" / version / "anomaly_score.avsc"
    old_schema = json.loads(path.read_text())
    old = fastavro.parse_schema(old_schema)
    old_fields = {f["name"] for f in old_schema["fields"]}
    assert SCORE["explanation"]
    assert SCORE["reranked_percentile"] is not None
    value = make_encoder("schemaless")(SCORE)
    resolved = fastavro.schemaless_reader(io.BytesIO(value), output_schema(), old)
    plain = fastavro.schemaless_reader(io.BytesIO(value), old, None)
    assert "reranked_percentile" not in resolved
    assert set(resolved) == old_fields
    assert resolved == plain
    assert resolved["oid"] == SCORE["oid"]
    assert resolved["service_version"] == SCORE["service_version"]
    # and the new reader reads old records, with the defaults of what they lack
    old_value = io.BytesIO()
    fastavro.schemaless_writer(old_value, old, {k: v for k, v in SCORE.items() if k in old_fields})
    upgraded = fastavro.schemaless_reader(io.BytesIO(old_value.getvalue()), old, output_schema())
    explained = [e["feature"] for e in upgraded["explanation"]]
    assert explained == ([] if version < "1.2" else [e["feature"] for e in SCORE["explanation"]])
    assert upgraded["feature_coverage"] == (None if version == "1.0" else SCORE["feature_coverage"])
    for name in ("reranked_percentile", "reranker_expert", "reranker_version", "reranker_checksum"):
        assert upgraded[name] is None
    assert upgraded["oid"] == SCORE["oid"]


def test_the_score_writer_refuses_types_it_does_not_know() -> None:
    with pytest.raises(SettingsError, match="no fast writer"):
        RecordWriter({"type": "record", "name": "r", "fields": [{"name": "a", "type": "bytes"}]})
