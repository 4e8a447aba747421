"""Input decoding in every configured format, failures as InputError, score encoding."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest

from models.resources import schemas_dir
from service.codec import decode_output, make_decoder, make_encoder
from service.exceptions import InputError
from service.surveys import SURVEYS

SCHEMA = fastavro.parse_schema(SURVEYS["ztf"].schema)
SAMPLES = sorted((schemas_dir() / "ztf-lc-classifier" / "1.0" / "samples").glob("*.json"))
RECORD = json.loads(SAMPLES[0].read_text())
SCORE = json.loads(
    (schemas_dir() / "anomaly-score" / "1.0" / "samples" / "periodic-mcdsvdd.json").read_text()
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
    records = [json.loads(p.read_text()) for p in SAMPLES]
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
