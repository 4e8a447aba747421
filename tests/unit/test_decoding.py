"""Decoding into columns (service.io.codecs.decoding): the batch path (learned layouts run by a
compiled loop) gives exactly what the generic path (fastavro) gives, for every stored record version
- ALeRCE's three ZTF versions (record-typed features with float/double fields, map-typed features,
probabilities as a one-branch union) and the LSST record - on fuzzed records and fuzzed bytes;
the generic path gives fastavro's values under today's feature names; the compiled loop never
reads outside its buffer."""

from __future__ import annotations

import functools
import io
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
import structlog
from hypothesis import given, settings

from models.features import canonical_name
from service.config import InputSettings
from service.io.codecs.avro import confluent_header
from service.io.codecs.batchdecode import _walk
from service.io.codecs.decoding import Decoded, MessageDecoder
from service.io.codecs.surveys import SURVEYS
from tests.unit.alerce_records import (
    VERSIONS,
    base_record,
    encode,
    fastavro_decode,
    id_field,
    mutate,
    records,
    schema,
)


def decoder(survey: str, version: str, **settings_: Any) -> MessageDecoder:
    return MessageDecoder(InputSettings(schema_version=version, **settings_), SURVEYS[survey])


def by_message(decoded: Decoded, n: int) -> list[Any]:
    """Per message: the error reason, or its alerts as (id, top (name, bits), feature name ->
    bits) - every NaN payload and -0.0 included."""
    out: list[Any] = [[] for _ in range(n)]
    for group in decoded.groups:
        for j, i in enumerate(group.inputs.tolist()):
            top = tuple((t, group.top[j, k].tobytes()) for k, t in enumerate(group.top_names))
            features = {name: group.values[j, c].tobytes() for c, name in enumerate(group.names)}
            assert np.isnan(group.values[j, -1])  # where absent features point
            out[i].append((group.ids[j], top, features))
    for i, error in decoded.errors.items():
        assert not out[i], "a message with an error also has alerts"
        out[i] = error.reason
    return out


def only(messages: list[Any], wanted: frozenset[str]) -> list[Any]:
    """:func:`by_message` with the wanted features only."""
    return [
        m
        if isinstance(m, str)
        else [(oid, top, {k: v for k, v in f.items() if k in wanted}) for oid, top, f in m]
        for m in messages
    ]


@functools.cache
def fuzzed_values(survey: str, version: str, n: int = 150) -> list[bytes | None]:
    """Fuzzed records (hypothesis), a fifth of them with mutated bytes (a seeded generator:
    hypothesis's own random numbers lean towards small values); made once per version and run
    (hypothesis takes ~0.2 s a record of ZTF's version 1)."""
    base = base_record(survey, version)
    encoded: list[bytes] = [encode(survey, version, base)]

    @settings(max_examples=n, derandomize=True, deadline=None, database=None)
    @given(records(survey, version, base))
    def collect(record: dict[str, Any]) -> None:
        encoded.append(encode(survey, version, record))

    collect()
    rng = random.Random(20261129)
    values: list[bytes | None] = [mutate(v, rng) if rng.random() < 0.2 else v for v in encoded]
    return [*values, None, b""]


@pytest.mark.parametrize(("survey", "version"), VERSIONS, ids=lambda v: str(v))
def test_batches_decode_like_fastavro_on_fuzzed_records_and_bytes(
    survey: str, version: str
) -> None:
    values = fuzzed_values(survey, version)
    batched, generic = decoder(survey, version), decoder(survey, version, decoder="generic")
    # a decoder that gathers a third of the features only (the models' features, in the service)
    base = encode(survey, version, base_record(survey, version))
    [[(_, _, features)]] = by_message(generic.decode([base]), 1)
    wanted = frozenset(sorted(features)[::3])
    some = MessageDecoder(InputSettings(schema_version=version), SURVEYS[survey], wanted=wanted)
    taken = taken_some = 0
    for begin in range(0, len(values), 45):  # consumed batches of 45 messages
        chunk = values[begin : begin + 45]
        fast = batched.decode(chunk)
        slow = generic.decode(chunk)
        assert by_message(fast, len(chunk)) == by_message(slow, len(chunk))
        assert slow.paths == {"batch": 0, "generic": len(chunk)}
        taken += fast.paths["batch"]
        partial = some.decode(chunk)
        assert only(by_message(partial, len(chunk)), wanted) == only(
            by_message(slow, len(chunk)), wanted
        )
        taken_some += partial.paths["batch"]
    assert batched.learners, "this version's schema has no layouts"
    assert taken > len(values) / 4, "the batch path took too little to prove anything"
    assert taken_some == taken
    again = some.decode([base] * 3)
    assert again.paths["batch"] == 3
    [group] = again.groups  # the batch path gathers the wanted columns only
    assert set(group.names) == wanted
    assert group.values.shape == (3, len(wanted) + 1)


@pytest.mark.parametrize(("survey", "version"), VERSIONS, ids=lambda v: str(v))
def test_the_batch_path_tells_where_lc_classification_begins(survey: str, version: str) -> None:
    """``heads``: the bytes from there are the record's lc_classification and nothing else (an
    output in their step's format is spliced there)."""
    [classification] = [
        f["type"] for f in schema(survey, version)["fields"] if f["name"] == "lc_classification"
    ]
    parsed = fastavro.parse_schema(classification)
    values = [v for v in fuzzed_values(survey, version) if v]
    batched, found = decoder(survey, version), 0
    for begin in range(0, len(values), 45):
        chunk = values[begin : begin + 45]
        for group in batched.decode(chunk).groups:
            if group.heads is None:  # decoded generically
                continue
            for i, head in zip(group.inputs.tolist(), group.heads.tolist(), strict=True):
                rest = io.BytesIO(chunk[i][head:])
                tail = fastavro.schemaless_reader(rest, parsed, None)
                assert rest.tell() == len(chunk[i]) - head
                whole = fastavro_decode(survey, version, chunk[i])
                assert repr(tail) == repr(whole["lc_classification"])  # NaN as NaN
                found += 1
    assert found > len(values) / 4


@pytest.mark.parametrize(("survey", "version"), VERSIONS, ids=lambda v: str(v))
def test_the_generic_path_gives_fastavros_values_by_todays_names(survey: str, version: str) -> None:
    values = [encode(survey, version, base_record(survey, version, seed=s)) for s in range(5)]
    decoded = decoder(survey, version, decoder="generic").decode(values)
    for i, alerts in enumerate(by_message(decoded, len(values))):
        record = fastavro_decode(survey, version, values[i])
        [(oid, top, features)] = alerts
        assert oid == str(record[id_field(survey, version)])
        want_top = record["lc_classification"]["hierarchical"]["top"]
        assert top == tuple((k, np.float64(v).tobytes()) for k, v in want_top.items())
        rename = canonical_name if survey == "ztf" else str
        want = {
            rename(k): np.float64(np.nan if v is None else v).tobytes()
            for k, v in record["features"].items()
        }
        assert features == want


def test_one_message_takes_the_batch_path_once_the_layout_is_known() -> None:
    values = [encode("ztf", "3", base_record("ztf", "3", seed=s)) for s in range(3)]
    fast, slow = decoder("ztf", "3"), decoder("ztf", "3", decoder="generic")
    for value in values:  # the first teaches the layout, and is decoded by it too
        assert fast.decode([value]).paths == {"batch": 1, "generic": 0}
    assert by_message(fast.decode(values), 3) == by_message(slow.decode(values), 3)


def test_confluent_input_is_decoded_per_schema_id_and_version(tmp_path: Path) -> None:
    ids = {1: "1", 3: "3"}
    paths = {i: str(SURVEYS["ztf"].schema_path(v)) for i, v in ids.items()}
    confluent = decoder("ztf", None, format="confluent", confluent_schemas=paths)  # type: ignore[arg-type]
    values: list[bytes | None] = []
    for i, version in ids.items():
        values += [
            confluent_header(i) + encode("ztf", version, base_record("ztf", version, seed=s))
            for s in range(40)
        ]
    values.append(confluent_header(2) + values[0][5:])  # type: ignore[index]  # unknown id
    decoded = confluent.decode(values)
    assert decoded.paths["batch"] == 80
    assert decoded.errors[80].reason == "unknown_schema"
    names = {g.names for g in decoded.groups}
    assert len(names) == 2  # the 2023 and today's naming, both by today's names
    assert all("g_r_max_12" in n and "g-r_max" not in n for n in names)


def test_the_reason_for_generic_decoding_is_logged_once_per_cause() -> None:
    values = [encode("ztf", "3", base_record("ztf", "3", seed=s)) for s in range(40)]
    other = base_record("ztf", "3", seed=99)
    other["features"] = dict(reversed(list(other["features"].items())))  # another key order
    with structlog.testing.capture_logs() as logs:
        d = decoder("ztf", "3")
        d.decode(values[:2])
        d.decode(values)
        d.decode([*values, encode("ztf", "3", other)] * 2)
        d.decode([*values, encode("ztf", "3", other)])
    causes = [e["cause"] for e in logs if e["event"] == "generic_decoding"]
    assert causes == ["layout_mismatch"]
    learned = [e for e in logs if e["event"] == "decoder_layout_learned"]
    assert len(learned) == 2  # the stream's order, then the other one
    with structlog.testing.capture_logs() as logs:
        decoder("ztf", "3", decoder="generic").decode(values)
        decoder("ztf", "3", format="json")
    assert [e["cause"] for e in logs if e["event"] == "generic_decoding"] == ["forced", "format"]


_CUT_AND_GROWN = """
import random
from tests.unit.alerce_records import VERSIONS, base_record, encode
from tests.unit.test_decoding import decoder
rng = random.Random(3)
for survey, version in VERSIONS:
    d = decoder(survey, version)
    whole = encode(survey, version, base_record(survey, version))
    for size in range(len(whole) + 1):  # every cut and a grown tail, last in their batch
        grown = whole[:size] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        d.decode([whole, whole[:size]])
        d.decode([whole, grown])
    assert d.learners and d.decode([whole]).paths["batch"] == 1
print("ok")
"""


def test_the_compiled_decoder_never_reads_outside_its_buffer(tmp_path: Path) -> None:
    """With numba's bounds checks on (a fresh compilation), every cut and every grown message
    of every version, placed last in its batch, is decoded or turned down - no read leaves the
    buffer (its padding included)."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", _CUT_AND_GROWN], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "ok"  # (the log goes to stdout too)


_NOWHERE_TO_CACHE = """
from numba.core import caching
caching.CacheImpl._locator_classes = []  # as where no directory can be written
from tests.unit.alerce_records import base_record, encode
from tests.unit.test_decoding import decoder
value = encode("ztf", "3", base_record("ztf", "3"))
print(decoder("ztf", "3").decode([value, value]).paths)
"""


def test_the_decoder_is_compiled_where_nothing_can_be_cached() -> None:
    """A read-only install without a writable home (a hardened container) compiles the loop
    in each process instead of failing at import."""
    done = subprocess.run(
        [sys.executable, "-c", _NOWHERE_TO_CACHE], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "{'batch': 2, 'generic': 0}"


def test_the_loop_is_compiled_once_at_start_for_every_later_batch() -> None:
    """The decoder compiles its loop when it is made (not at the first batch, whose latency
    would pay for it), for the argument types of every batch after."""
    d = decoder("ztf", "3")
    assert len(_walk.signatures) == 1
    values = [encode("ztf", "3", base_record("ztf", "3", seed=s)) for s in range(3)]
    assert d.decode(values).paths == {"batch": 3, "generic": 0}
    long_ids = decoder("lsst", sorted(SURVEYS["lsst"].versions)[-1])
    assert long_ids.learners
    assert len(_walk.signatures) == 1
