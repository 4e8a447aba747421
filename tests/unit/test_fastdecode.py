"""The specialised decoder (service.fastdecode) is equal to fastavro: on every schema sample, on
the committed sample alerts, and on fuzzed records and fuzzed bytes - it either decodes exactly
what fastavro decodes, or declines (and the generic path takes the message)."""

from __future__ import annotations

import json
import math
import random
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.resources import sample_dir, schemas_dir
from models.simulate.alerts import input_records
from models.table import read_table
from service.codec import confluent_header, write_long
from service.config import load_settings
from service.exceptions import InputError
from service.fastdecode import MAX_LAYOUTS, Shape, TemplateDecoder
from service.processing import AlertProcessor, Row, Source
from service.surveys import SURVEYS
from tests.unit.classifier_records import (
    ID_FIELDS,
    SCHEMAS,
    encode,
    fastavro_decode,
    mutate,
    records,
    sample_record,
)

SOURCE = Source("t", 0, 0, None)


def same_float(a: float | None, b: float) -> bool:
    if a is None:
        return math.isnan(b)
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_equal_to_fastavro(survey: str, decoder: TemplateDecoder, value: bytes) -> bool:
    """Check one message; True if the fast path took it."""
    fast = decoder.decode(value)
    if fast is None:
        return False
    record = fastavro_decode(SCHEMAS[survey], value)
    assert record is not None, "the fast path accepted bytes fastavro rejects"
    assert fast.oid == str(record[ID_FIELDS[survey]])
    top = record["lc_classification"]["hierarchical"]["top"]
    assert list(fast.top_probabilities) == list(top)
    assert all(same_float(top[k], v) for k, v in fast.top_probabilities.items())
    names = tuple(record["features"])
    assert fast.layout.feature_names == names
    values = fast.values[fast.layout.positions(names)]
    for name, got in zip(names, values, strict=True):
        expected = record["features"][name]
        if expected is None:
            assert np.isnan(got), name
        else:  # as the generic path converts it: to float64, then the row's dtype
            want = np.asarray(float(expected), dtype=np.float64).astype(values.dtype)
            assert want == got or (np.isnan(want) and np.isnan(got)), (name, expected, got)
    return True


@pytest.fixture(scope="module")
def ztf_records() -> list[dict[str, Any]]:
    return list(input_records(read_table(sample_dir() / "objects.parquet")))


def learned(survey: str, record: dict[str, Any]) -> TemplateDecoder:
    decoder = TemplateDecoder.for_schema(SCHEMAS[survey], ID_FIELDS[survey])
    assert decoder is not None
    assert decoder.learn(record)
    return decoder


# -- samples -------------------------------------------------------------------------------


@pytest.mark.parametrize("survey", sorted(SURVEYS))
def test_every_schema_sample_decodes_like_fastavro(survey: str) -> None:
    samples = sorted((schemas_dir() / SURVEYS[survey].schema_path.parent / "samples").glob("*"))
    assert samples
    for path in samples:
        record = json.loads(path.read_text())
        value = encode(SCHEMAS[survey], record)
        decoder = learned(survey, fastavro_decode(SCHEMAS[survey], value))
        assert assert_equal_to_fastavro(survey, decoder, value), path.name


def test_the_committed_sample_takes_the_fast_path(ztf_records: list[dict[str, Any]]) -> None:
    decoder = learned("ztf", ztf_records[0])
    values = [encode(SCHEMAS["ztf"], r) for r in ztf_records]
    assert all(assert_equal_to_fastavro("ztf", decoder, v) for v in values)
    assert len(decoder.layouts) == 1


def outcome(processor: AlertProcessor, value: bytes, fast: bool) -> Any:
    """The rows (or the InputError reason) of one message on one path."""
    try:
        if fast:
            rows = processor.rows(value, SOURCE)
        else:
            rows = processor.rows_from_records(processor.decode(value), SOURCE)
    except InputError as exc:
        return exc.reason
    return [(top, row_key(row)) for top, row in rows]


def row_key(row: Row) -> tuple[Any, ...]:
    return (row.oid, row.top_probability, row.features.dtype, row.features.tobytes())


def test_the_service_rows_are_the_same_on_both_paths(ztf_records: list[dict[str, Any]]) -> None:
    processor = AlertProcessor(load_settings(None, {"input": {"topics": ["t"]}}))
    rng = random.Random(1)
    values = [encode(SCHEMAS["ztf"], r) for r in ztf_records[:600]]
    values += [mutate(v, rng) for v in values[:600]]
    for value in values:
        assert outcome(processor, value, fast=True) == outcome(processor, value, fast=False)
    paths = processor.decode_paths()
    assert paths["fast"] > 500, paths  # the comparison really exercised the fast path


# -- fuzzing -------------------------------------------------------------------------------


@pytest.mark.parametrize("survey", sorted(SURVEYS))
def test_fuzzed_records_decode_like_fastavro(survey: str) -> None:
    base = sample_record(survey)
    decoder = learned(survey, base)
    taken = []

    @settings(max_examples=300, derandomize=True, deadline=None)
    @given(records(survey, base))
    def check(record: dict[str, Any]) -> None:
        taken.append(assert_equal_to_fastavro(survey, decoder, encode(SCHEMAS[survey], record)))

    check()
    assert sum(taken) > len(taken) / 4, "too few fuzzed records took the fast path"


@pytest.mark.parametrize("survey", sorted(SURVEYS))
def test_fuzzed_bytes_are_decoded_like_fastavro_or_declined(survey: str) -> None:
    base = sample_record(survey)
    decoder = learned(survey, base)

    @settings(
        max_examples=400,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(records(survey, base), st.lists(st.tuples(st.integers(0, 3), st.randoms()), max_size=3))
    def check(record: dict[str, Any], edits: list[tuple[int, random.Random]]) -> None:
        value = encode(SCHEMAS[survey], record)
        for _, rng in edits:
            value = mutate(value, rng) if value else value
        assert_equal_to_fastavro(survey, decoder, value)

    check()


# -- what the fast path declines --------------------------------------------------------------


def test_a_map_written_in_several_blocks_is_left_to_fastavro(
    ztf_records: list[dict[str, Any]],
) -> None:
    record = ztf_records[0]
    decoder = learned("ztf", record)
    value = encode(SCHEMAS["ztf"], record)
    map_schema = SCHEMAS["ztf"]["fields"][1]["type"][0]
    features = encode(map_schema, record["features"])  # count, entries, end marker
    count = write_long(len(record["features"]))
    entries = features[len(count) : -1]
    prefix = encode({"type": "string"}, record["oid"]) + write_long(0)  # id, union branch 0
    assert value.startswith(prefix + features)
    # the same entries as one block with a negative count and its byte size (also valid Avro)
    blocked = (
        prefix
        + write_long(-len(record["features"]))
        + write_long(len(entries))
        + value[len(prefix) + len(count) :]
    )
    assert fastavro_decode(SCHEMAS["ztf"], blocked) == fastavro_decode(SCHEMAS["ztf"], value)
    assert decoder.decode(value) is not None
    assert decoder.decode(blocked) is None


def test_other_schemas_have_no_fast_path() -> None:
    score_schema = json.loads(
        next((schemas_dir() / "anomaly-score" / "1.0").glob("*.avsc")).read_text()
    )
    assert Shape.of(score_schema, "oid") is None
    assert Shape.of(SCHEMAS["ztf"], "diaObjectId") is None
    renamed = {**SCHEMAS["ztf"], "fields": list(reversed(SCHEMAS["ztf"]["fields"]))}
    assert Shape.of(renamed, "oid") is None


def test_layouts_are_bounded(ztf_records: list[dict[str, Any]]) -> None:
    decoder = TemplateDecoder.for_schema(SCHEMAS["ztf"], "oid")
    assert decoder is not None
    record = ztf_records[0]
    names = list(record["features"])
    learned_now = []
    for i in range(MAX_LAYOUTS + 3):
        shifted = names[i:] + names[:i]
        learned_now.append(decoder.learn({**record, "features": dict.fromkeys(shifted, 0.0)}))
    assert learned_now == [True] * MAX_LAYOUTS + [False] * 3
    assert not decoder.learn({**record, "features": {}})  # nothing to gain


def test_infinite_features_are_reported_by_the_generic_path(
    ztf_records: list[dict[str, Any]],
) -> None:
    processor = AlertProcessor(load_settings(None, {"input": {"topics": ["t"]}}))
    processor.rows(encode(SCHEMAS["ztf"], ztf_records[0]), SOURCE)  # learns the layout
    record = json.loads(json.dumps(ztf_records[1]))
    record["features"]["Amplitude_1"] = float("inf")
    with pytest.raises(InputError) as error:
        processor.rows(encode(SCHEMAS["ztf"], record), SOURCE)
    assert error.value.reason == "non_finite_feature"
    assert processor.decode_paths() == {"batch": 0, "fast": 0, "generic": 2}


def test_float_bits_survive(ztf_records: list[dict[str, Any]]) -> None:
    decoder = learned("ztf", ztf_records[0])
    record = json.loads(json.dumps(ztf_records[0]))
    tiny = struct.unpack("<f", b"\x01\x00\x00\x00")[0]  # smallest subnormal float32
    record["features"]["Amplitude_1"] = tiny
    record["features"]["Mean_1"] = -0.0
    fast = decoder.decode(encode(SCHEMAS["ztf"], record))
    assert fast is not None
    row = fast.row(("Amplitude_1", "Mean_1", "not-a-feature"))
    assert row is not None
    assert row[0] == np.float32(tiny)
    assert math.copysign(1.0, float(row[1])) == -1.0
    assert math.isnan(row[2])


def test_confluent_messages_take_the_fast_path_per_schema_id(
    ztf_records: list[dict[str, Any]],
) -> None:
    schema_file = schemas_dir() / SURVEYS["ztf"].schema_path
    processor = AlertProcessor(
        load_settings(
            None,
            {
                "input": {
                    "topics": ["t"],
                    "format": "confluent",
                    "confluent_schemas": {7: str(schema_file)},
                }
            },
        )
    )
    values = [confluent_header(7) + encode(SCHEMAS["ztf"], r) for r in ztf_records[:200]]
    values.append(confluent_header(8) + encode(SCHEMAS["ztf"], ztf_records[0]))  # unknown id
    for value in values:
        assert outcome(processor, value, fast=True) == outcome(processor, value, fast=False)
    assert outcome(processor, values[-1], fast=True) == "unknown_schema"
    assert processor.decode_paths()["fast"] >= 199
