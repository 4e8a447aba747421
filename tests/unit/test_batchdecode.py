"""The batch decoder (service.batchdecode) is equal to the per-message fast path, and through it
to fastavro: on fuzzed batches of records and bytes of both surveys, on the committed sample, and
where a batch mixes what it can decode with what it must leave to the per-message path."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.resources import sample_dir, schemas_dir
from models.simulate.alerts import input_records
from models.table import read_table
from service.batchdecode import CHUNK, MIN_BATCH, BatchDecoder
from service.codec import confluent_header
from service.config import load_settings
from service.exceptions import InputError
from service.fastdecode import TemplateDecoder
from service.processing import AlertProcessor, Source
from service.surveys import SURVEYS, route
from tests.unit.classifier_records import (
    ID_FIELDS,
    SCHEMAS,
    encode,
    fastavro_decode,
    mutate,
    records,
    sample_record,
)


def decoders(survey: str, record: dict[str, Any]) -> tuple[TemplateDecoder, BatchDecoder]:
    decoder = TemplateDecoder.for_schema(SCHEMAS[survey], ID_FIELDS[survey])
    assert decoder is not None
    assert decoder.learn(record)
    return decoder, BatchDecoder(decoder, b"")


def assert_batch_equals_per_message(
    decoder: TemplateDecoder, batch: BatchDecoder, values: list[bytes]
) -> int:
    """Every message the batch decoder takes, the per-message path takes too, with the same id,
    probabilities and feature bits; returns how many it took."""
    taken = 0
    for decoded in batch.decode(values):
        assert len(decoded.inputs) == len(decoded.oids) == len(decoded.top) == len(decoded.values)
        for i, oid, top, row in zip(
            decoded.inputs.tolist(), decoded.oids, decoded.top, decoded.values, strict=True
        ):
            one = decoder.decode(values[i])
            assert one is not None, "the batch decoder took a message the fast path declines"
            assert one.layout is decoded.layout
            assert oid == one.oid
            np.testing.assert_array_equal(top, list(one.top_probabilities.values()))
            assert row.dtype == one.values.dtype
            assert row.tobytes() == one.values.tobytes()  # NaN payloads and -0.0 included
            taken += 1
    return taken


@pytest.mark.parametrize("survey", sorted(SURVEYS))
def test_fuzzed_batches_decode_like_the_per_message_path(survey: str) -> None:
    base = sample_record(survey)
    decoder, batch = decoders(survey, base)
    values: list[bytes] = []

    @settings(max_examples=400, derandomize=True, deadline=None)
    @given(records(survey, base), st.randoms(use_true_random=False))
    def collect(record: dict[str, Any], rng: random.Random) -> None:
        value = encode(SCHEMAS[survey], record)
        values.append(mutate(value, rng) if rng.random() < 0.2 else value)

    collect()
    taken = sum(
        assert_batch_equals_per_message(decoder, batch, values[i : i + MIN_BATCH + 8])
        for i in range(0, len(values), MIN_BATCH + 8)
    )
    # within the fuzzed ranges (ids and classes under 64 bytes, integers in -9..9) the batch
    # path leaves nothing to the per-message path that it could take
    assert taken == sum(decoder.decode(v) is not None for v in values)
    assert taken > len(values) / 4


def test_the_committed_sample_is_decoded_in_batches_across_chunks() -> None:
    records_ = list(input_records(read_table(sample_dir() / "objects.parquet")))
    decoder, batch = decoders("ztf", records_[0])
    values = [encode(SCHEMAS["ztf"], r) for r in records_[: 2 * CHUNK + 5]]
    assert assert_batch_equals_per_message(decoder, batch, values) == len(values)


def test_float_and_double_features_in_one_message_are_left_to_the_per_message_path() -> None:
    base = sample_record("lsst")
    decoder, batch = decoders("lsst", base)
    doubles = encode(SCHEMAS["lsst"], base)  # fastavro writes Python floats as doubles here
    features = {k: ("float", v) if isinstance(v, float) else v for k, v in base["features"].items()}
    floats = encode(SCHEMAS["lsst"], {**base, "features": features})
    first = next(k for k, v in base["features"].items() if isinstance(v, float))
    mixed = encode(
        SCHEMAS["lsst"], {**base, "features": {**base["features"], first: features[first]}}
    )
    values = [doubles, floats, mixed] * MIN_BATCH
    decoded = batch.decode(values)
    assert sorted(d.values.dtype.name for d in decoded) == ["float32", "float64"]
    taken = sorted(i for d in decoded for i in d.inputs.tolist())
    assert taken == [i for i in range(len(values)) if i % 3 != 2]
    assert assert_batch_equals_per_message(decoder, batch, values) == len(taken)
    assert decoder.decode(mixed) is None  # and the per-message fast path declines it too


# -- the processor: rows_many is rows, message by message ---------------------------------------


def rows_key(result: Any) -> Any:
    if isinstance(result, InputError):
        return result.reason
    return [
        (top, r.source, r.oid, r.top_probability, r.features.dtype, r.features.tobytes())
        for top, r in result
    ]


def assert_rows_many_is_rows(processor: AlertProcessor, values: list[bytes | None]) -> None:
    sources = [Source("t", i % 3, i, 1000 + i) for i in range(len(values))]
    many = processor.rows_many(values, sources)
    assert len(many) == len(values)
    for value, source, result in zip(values, sources, many, strict=True):
        try:
            one: Any = processor.rows(value, source)
        except InputError as exc:
            one = exc
        assert rows_key(result) == rows_key(one)


@pytest.fixture(scope="module")
def processor() -> AlertProcessor:
    return AlertProcessor(load_settings(None, {"input": {"topics": ["t"]}}))


@pytest.fixture(scope="module")
def sample_values() -> list[bytes]:
    records_ = input_records(read_table(sample_dir() / "objects.parquet"))
    return [encode(SCHEMAS["ztf"], r) for r in records_]


def test_the_first_message_of_a_batch_teaches_the_layout(sample_values: list[bytes]) -> None:
    fresh = AlertProcessor(load_settings(None, {"input": {"topics": ["t"]}}))
    sources = [Source("t", 0, i, None) for i in range(100)]
    fresh.rows_many(sample_values[:100], sources)
    assert fresh.decode_paths() == {"batch": 99, "fast": 0, "generic": 1}


def test_small_batches_go_message_by_message(sample_values: list[bytes]) -> None:
    fresh = AlertProcessor(load_settings(None, {"input": {"topics": ["t"]}}))
    sources = [Source("t", 0, i, None) for i in range(MIN_BATCH - 1)]
    fresh.rows_many(sample_values[: MIN_BATCH - 1], sources)
    assert fresh.decode_paths() == {"batch": 0, "fast": MIN_BATCH - 2, "generic": 1}


def test_rows_many_is_rows_on_the_sample_and_its_mutations(
    processor: AlertProcessor, sample_values: list[bytes]
) -> None:
    rng = random.Random(7)
    values: list[bytes | None] = [*sample_values, None, b""]
    values += [mutate(v, rng) for v in sample_values[:1500]]
    before = processor.decode_paths()["batch"]
    assert_rows_many_is_rows(processor, values)
    assert processor.decode_paths()["batch"] - before >= len(sample_values) - 1


def test_what_rows_rejects_is_rejected_in_a_batch_too(sample_values: list[bytes]) -> None:
    only_two = AlertProcessor(
        load_settings(
            None,
            {
                "input": {"topics": ["t"]},
                "model": {"scorers": {"Periodic": "mcdsvdd", "Transient": "mcdsvdd"}},
            },
        )
    )
    records_ = list(input_records(read_table(sample_dir() / "objects.parquet")))
    periodic = next(
        r for r in records_ if route(r["lc_classification"]["hierarchical"]["top"])[0] == "Periodic"
    )
    infinite = json.loads(json.dumps(periodic))
    infinite["features"][only_two.routes["Periodic"].assembler.feature_names[0]] = float("inf")
    nan_top = json.loads(json.dumps(records_[2]))
    first_class = next(iter(nan_top["lc_classification"]["hierarchical"]["top"]))
    nan_top["lc_classification"]["hierarchical"]["top"][first_class] = float("nan")
    tie = json.loads(json.dumps(records_[3]))
    tie["lc_classification"]["hierarchical"]["top"] = dict.fromkeys(
        tie["lc_classification"]["hierarchical"]["top"], 0.5
    )
    specials = [encode(SCHEMAS["ztf"], r) for r in (infinite, nan_top, tie)]
    values: list[bytes | None] = [*sample_values[:MIN_BATCH], *specials, *sample_values[-40:]]
    assert_rows_many_is_rows(only_two, values)
    sources = [Source("t", 0, i, None) for i in range(len(values))]
    reasons = {r.reason for r in only_two.rows_many(values, sources) if isinstance(r, InputError)}
    assert reasons == {"non_finite_feature", "missing_probabilities", "unknown_class"}


def test_confluent_batches_are_decoded_per_schema_id(sample_values: list[bytes]) -> None:
    schema_file = schemas_dir() / SURVEYS["ztf"].schema_path
    confluent = AlertProcessor(
        load_settings(
            None,
            {
                "input": {
                    "topics": ["t"],
                    "format": "confluent",
                    "confluent_schemas": {7: str(schema_file), 9: str(schema_file)},
                }
            },
        )
    )
    values: list[bytes | None] = [confluent_header(7) + v for v in sample_values[:100]]
    values += [confluent_header(9) + v for v in sample_values[100:200]]
    values.append(confluent_header(8) + sample_values[0])  # not a configured schema id
    assert_rows_many_is_rows(confluent, values)
    paths = confluent.decode_paths()
    assert paths["batch"] >= 2 * 99 - 2
    sources = [Source("t", 0, i, None) for i in range(len(values))]
    last = confluent.rows_many(values, sources)[-1]
    assert isinstance(last, InputError)
    assert last.reason == "unknown_schema"


def test_decoded_values_are_the_features_in_layout_order(sample_values: list[bytes]) -> None:
    records_ = list(input_records(read_table(sample_dir() / "objects.parquet")))
    _, batch = decoders("ztf", records_[0])
    [decoded] = batch.decode(sample_values[:MIN_BATCH])
    names = decoded.layout.feature_names
    for i, row in zip(decoded.inputs.tolist(), decoded.values, strict=True):
        record = fastavro_decode(SCHEMAS["ztf"], sample_values[i])
        want = [np.nan if record["features"][n] is None else record["features"][n] for n in names]
        np.testing.assert_array_equal(row[:-1], np.asarray(want, dtype=np.float32))
        assert np.isnan(row[-1])  # the column that features missing from the layout point to
