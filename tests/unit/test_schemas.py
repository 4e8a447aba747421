"""Every schema version under schemas/ parses, and every sample payload of it validates and
survives an Avro round trip."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import numpy as np
import pytest

from models.resources import schemas_dir

VERSIONS = sorted(p.parent for p in schemas_dir().glob("*/*/*.avsc"))


def _samples(version: Path) -> list[Path]:
    return sorted((version / "samples").glob("*.json"))


def _close(a: object, b: object) -> bool:
    """Equal up to Avro float (32-bit) precision."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.isclose(a, b, rtol=1e-6))
    return a == b


def test_the_expected_schemas_exist() -> None:
    names = {f"{v.parent.name}/{v.name}" for v in VERSIONS}
    assert {
        "ztf-lc-classifier/1",
        "ztf-lc-classifier/2",
        "ztf-lc-classifier/3",
        "ztf-features/2023",
        "ztf-features/2024",
        "lsst-lc-classifier/1.0",
        "anomaly-score/1.0",
    } <= names


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v.parent.name}/{v.name}")
def test_samples_validate_and_round_trip(version: Path) -> None:
    (schema_file,) = version.glob("*.avsc")
    schema = fastavro.parse_schema(json.loads(schema_file.read_text()))
    samples = _samples(version)
    assert samples, f"{version} has no sample payloads"
    for sample in samples:
        record = json.loads(sample.read_text())
        assert fastavro.validation.validate(record, schema, raise_errors=False), sample.name
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        buffer.seek(0)
        back = fastavro.schemaless_reader(buffer, schema, None)
        if "scored_at" in record:  # timestamp-millis reads back as datetime
            assert isinstance(back, dict)
            back = {
                k: (int(v.timestamp() * 1000) if hasattr(v, "timestamp") else v)
                for k, v in back.items()
            }
        assert _close(back, record), sample.name
