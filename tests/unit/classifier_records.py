"""Classifier records for the decoder tests: encoding, fastavro as the reference, fuzzing
strategies (records in a learned key order with random values, sometimes in another order) and
byte mutations."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import fastavro
from hypothesis import strategies as st

from models.resources import schemas_dir
from service.surveys import SURVEYS

SCHEMAS = {name: survey.schema for name, survey in SURVEYS.items()}
ID_FIELDS = {name: survey.id_field for name, survey in SURVEYS.items()}


PARSED = {id(schema): fastavro.parse_schema(schema) for schema in SCHEMAS.values()}


def parsed(schema: dict[str, Any]) -> Any:
    return PARSED.get(id(schema)) or fastavro.parse_schema(schema)


def encode(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed(schema), record)
    return buffer.getvalue()


def fastavro_decode(schema: dict[str, Any], value: bytes) -> Any:
    """fastavro's record, or None when it rejects the bytes (or leaves some unread)."""
    buffer = io.BytesIO(value)
    try:
        record = fastavro.schemaless_reader(buffer, parsed(schema), None)
    except Exception:
        return None
    return record if buffer.tell() == len(value) else None


def mutate(value: bytes, rng: random.Random) -> bytes:
    data = bytearray(value)
    i = rng.randrange(len(data))
    kind = rng.randrange(4)
    if kind == 0:
        data[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del data[i:]
    elif kind == 2:
        data.insert(i, rng.randrange(256))
    else:
        data += bytes([rng.randrange(256)])
    return bytes(data)


FLOAT32 = st.floats(width=32)
FEATURE = {
    "ztf": st.one_of(FLOAT32, FLOAT32, FLOAT32, st.none(), st.booleans(), st.integers(-9, 9)),
    "lsst": st.one_of(FLOAT32, FLOAT32, st.none(), st.booleans(), st.integers(-9, 9)),
}
ID = {"ztf": st.text(max_size=12), "lsst": st.integers(-(2**63), 2**63 - 1)}


@st.composite
def records(draw: st.DrawFn, survey: str, base: dict[str, Any]) -> dict[str, Any]:
    """A record in ``base``'s key order with random values - or, sometimes, in another order."""
    names = list(base["features"])
    if draw(st.integers(0, 9)) == 0:
        names = draw(st.permutations(names))[: draw(st.integers(0, len(names)))]
    classification = base["lc_classification"]
    top = list(classification["hierarchical"]["top"])
    if draw(st.integers(0, 9)) == 0:
        top = draw(st.permutations(top))
    hierarchical: dict[str, Any] = {"top": {k: draw(FLOAT32) for k in top}}
    hierarchical["children"] = {
        k: {s: draw(FLOAT32) for s in v}
        for k, v in classification["hierarchical"]["children"].items()
    }
    return {
        ID_FIELDS[survey]: draw(ID[survey]),
        "features": {n: draw(FEATURE[survey]) for n in names},
        "lc_classification": {
            "probabilities": {k: draw(FLOAT32) for k in classification["probabilities"]},
            "class": draw(st.text(max_size=8)),
            "hierarchical": hierarchical,
        },
    }


def sample_record(survey: str) -> dict[str, Any]:
    path = next((schemas_dir() / SURVEYS[survey].schema_path.parent / "samples").glob("*.json"))
    record: dict[str, Any] = fastavro_decode(
        SCHEMAS[survey], encode(SCHEMAS[survey], json.loads(path.read_text()))
    )
    return record
