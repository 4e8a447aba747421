"""Rubin alert packets as bytes: schemaless Avro, Rubin's Confluent wire format, Avro container
files, the sample alerts lsst-alert-packet ships, and validation against a schema version."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import fastavro

from models.exceptions import DataError
from models.rubin.schemas import SchemaVersion, alert_schema, get_version, version_of_schema_id

CONFLUENT_MAGIC: Final = 0


def serialize(alert: Mapping[str, Any], version: str | None = None) -> bytes:
    """Schemaless Avro bytes of an alert packet of ``version`` (default: the latest)."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, alert_schema(version), dict(alert))
    return buffer.getvalue()


def confluent_frame(payload: bytes, schema_id: int) -> bytes:
    """Rubin's wire format: magic byte 0, the 4-byte big-endian schema id, the Avro payload."""
    return struct.pack(">bI", CONFLUENT_MAGIC, schema_id) + payload


def confluent_bytes(alert: Mapping[str, Any], version: str | None = None) -> bytes:
    """An alert packet in Rubin's Confluent wire format (schema id of ``version``)."""
    return confluent_frame(serialize(alert, version), get_version(version).schema_id)


def parse_confluent(data: bytes) -> tuple[SchemaVersion, dict[str, Any]]:
    """Decode Confluent-framed Rubin alert bytes: the schema version the id names and the
    record; DataError when the framing or the id is wrong."""
    if len(data) < 5 or data[0] != CONFLUENT_MAGIC:
        raise DataError("not in the Confluent wire format (magic byte 0 + 4-byte schema id)")
    (schema_id,) = struct.unpack(">I", data[1:5])
    entry = version_of_schema_id(schema_id)
    record = fastavro.schemaless_reader(io.BytesIO(data[5:]), alert_schema(entry.version))
    if not isinstance(record, dict):
        raise DataError("the alert payload is not an Avro record")
    return entry, record


def write_container(
    alerts: Iterable[Mapping[str, Any]], path: Path, version: str | None = None
) -> None:
    """Write alert packets as an Avro object-container file (schema embedded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fastavro.writer(fh, alert_schema(version), (dict(a) for a in alerts), codec="deflate")


def read_container(path: Path) -> Iterator[dict[str, Any]]:
    """The alert packets of an Avro object-container file (e.g. a sample ``fakeAlert.avro``)."""
    with open(path, "rb") as fh:
        for record in fastavro.reader(fh):
            if isinstance(record, dict):
                yield record


def sample_alerts(version: str) -> list[dict[str, Any]]:
    """The sample alerts lsst-alert-packet ships for ``version`` (its ``fakeAlert.avro``)."""
    return list(read_container(get_version(version).sample_avro))


def sample_alert_json(version: str) -> dict[str, Any]:
    """The sample ``alert.json`` of ``version`` (sparse: fields left out are null)."""
    with open(get_version(version).sample_json) as fh:
        loaded: dict[str, Any] = json.load(fh)
    return loaded


def validate(alert: Mapping[str, Any], version: str | None = None) -> None:
    """Raise DataError naming the problem unless ``alert`` is valid against the version's
    schema."""
    try:
        fastavro.validation.validate(dict(alert), alert_schema(version), raise_errors=True)
    except fastavro.validation.ValidationError as exc:
        raise DataError(f"invalid Rubin alert packet: {str(exc)[:300]}") from exc
