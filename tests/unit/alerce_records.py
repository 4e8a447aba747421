"""Classifier records of every stored version, for the decoder tests: plausible records built from
the schemas and ALeRCE's feature names (no sample file needed), fastavro encoding, fuzzing
strategies (random values, sometimes another key order) and byte mutations."""

from __future__ import annotations

import io
import json
import random
from functools import cache
from typing import Any

import fastavro
from hypothesis import strategies as st

from models.features import ztf_feature_names
from models.resources import schemas_dir
from models.taxonomy import SUBCLASSES, TOP_CLASSES
from service.io.codecs.surveys import SURVEYS

# (survey, record version) of every stored classifier-record schema
VERSIONS = [(s.name, v) for s in SURVEYS.values() for v in sorted(s.versions)]


@cache
def schema(survey: str, version: str) -> dict[str, Any]:
    return SURVEYS[survey].schema(version)


@cache
def _parsed(survey: str, version: str) -> Any:
    return fastavro.parse_schema(schema(survey, version))


def id_field(survey: str, version: str) -> str:
    field: str = schema(survey, version)["fields"][0]["name"]
    return field


def record_fields(survey: str, version: str) -> list[tuple[str, list[str]]] | None:
    """(name, union) of each feature field when the version's features are a record."""
    features = schema(survey, version)["fields"][1]["type"]
    if isinstance(features, dict) and features["type"] == "record":
        return [(f["name"], f["type"]) for f in features["fields"]]
    return None


def feature_names(survey: str, version: str) -> tuple[str, ...]:
    """The feature names records of this version carry."""
    fields = record_fields(survey, version)
    if fields is not None:
        return tuple(name for name, _ in fields)
    if survey == "ztf":  # 2: the 2023 names, 3: today's
        return ztf_feature_names("2023" if version == "2" else "2024")
    sample = next((schemas_dir() / SURVEYS[survey].versions[version]).parent.glob("samples/*"))
    return tuple(json.loads(sample.read_text())["features"])


def encode(survey: str, version: str, record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, _parsed(survey, version), record)
    return buffer.getvalue()


def fastavro_decode(survey: str, version: str, value: bytes) -> Any:
    """fastavro's record, or None when it rejects the bytes (or leaves some unread)."""
    buffer = io.BytesIO(value)
    try:
        record = fastavro.schemaless_reader(buffer, _parsed(survey, version), None)
    except Exception:
        return None
    return record if buffer.tell() == len(value) else None


def classification(top: dict[str, float], subclass: str) -> dict[str, Any]:
    """An lc_classification part with ``top`` probabilities."""
    children = {t: {s: 1.0 / len(SUBCLASSES[t]) for s in SUBCLASSES[t]} for t in TOP_CLASSES}
    return {
        "probabilities": {s: top[t] * p for t in TOP_CLASSES for s, p in children[t].items()},
        "class": subclass,
        "hierarchical": {"top": top, "children": children},
    }


def base_record(
    survey: str, version: str, top_class: str = "Periodic", seed: int = 0
) -> dict[str, Any]:
    """A plausible record: every feature of the version, some undefined (null)."""
    rng = random.Random(seed)
    features: dict[str, Any] = {
        name: None if rng.random() < 0.1 else rng.uniform(-3.0, 30.0)
        for name in feature_names(survey, version)
    }
    top = {t: (0.8 if t == top_class else 0.1) for t in TOP_CLASSES}
    oid: Any = (
        f"ZTF20abc{seed:04d}" if id_field(survey, version) != "diaObjectId" else 10**15 + seed
    )
    return {
        id_field(survey, version): oid,
        "features": features,
        "lc_classification": classification(top, SUBCLASSES[top_class][0]),
    }


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
_MAP_VALUES = st.one_of(FLOAT32, FLOAT32, FLOAT32, st.none(), st.booleans(), st.integers(-9, 9))
_LONG_IDS = st.integers(-(2**63), 2**63 - 1)


def _record_value(union: list[str]) -> st.SearchStrategy[Any]:
    number = st.floats() if "double" in union else FLOAT32
    return st.one_of(number, number, st.none()) if "null" in union else number


@st.composite
def records(draw: st.DrawFn, survey: str, version: str, base: dict[str, Any]) -> dict[str, Any]:
    """A record in ``base``'s key order with random values - or, sometimes, in another order."""
    fields = record_fields(survey, version)
    if fields is not None:
        features = {name: draw(_record_value(union)) for name, union in fields}
    else:
        names = list(base["features"])
        if draw(st.integers(0, 9)) == 0:
            names = draw(st.permutations(names))[: draw(st.integers(0, len(names)))]
        features = {n: draw(_MAP_VALUES) for n in names}
    part = base["lc_classification"]
    top = list(part["hierarchical"]["top"])
    if draw(st.integers(0, 9)) == 0:
        top = draw(st.permutations(top))
    hierarchical: dict[str, Any] = {"top": {k: draw(FLOAT32) for k in top}}
    hierarchical["children"] = {
        k: {s: draw(FLOAT32) for s in v} for k, v in part["hierarchical"]["children"].items()
    }
    string_id = id_field(survey, version) != "diaObjectId"
    return {
        id_field(survey, version): draw(st.text(max_size=12) if string_id else _LONG_IDS),
        "features": features,
        "lc_classification": {
            "probabilities": {k: draw(FLOAT32) for k in part["probabilities"]},
            "class": draw(st.text(max_size=8)),
            "hierarchical": hierarchical,
        },
    }
