"""Rubin's alert schema versions as the installed ``lsst-alert-packet`` ships them (the ``rubin``
extra): versions, Rubin's registry ids, the parsed Avro schemas and the fields of their records
(where each fact comes from: :mod:`models.rubin`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import fastavro

from models.exceptions import ConfigurationError, DataError
from models.extras import RUBIN, require

BANDS: Final[tuple[str, ...]] = ("u", "g", "r", "i", "z", "y")


def _packet() -> Any:
    """The ``lsst.alert.packet`` module, or a MissingExtraError naming the extra."""
    return require("lsst.alert.packet", RUBIN, "Rubin alert packets")


@dataclass(frozen=True)
class SchemaVersion:
    """One alert schema version shipped by lsst-alert-packet."""

    version: str  # "11.1"
    schema_id: int  # Rubin's schema-registry id, 1101
    directory: Path  # schema/<major>/<minor>

    @property
    def alert_file(self) -> Path:
        major, minor = self.version.split(".")
        return self.directory / f"lsst.v{major}_{minor}.alert.avsc"

    @property
    def sample_avro(self) -> Path:
        return self.directory / "sample_data" / "fakeAlert.avro"

    @property
    def sample_json(self) -> Path:
        return self.directory / "sample_data" / "alert.json"


def _version_key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


@cache
def schema_versions() -> tuple[SchemaVersion, ...]:
    """Every alert schema version of the installed lsst-alert-packet, oldest first, with its
    registry id (``Schema.get_schema_id``)."""
    packet = _packet()
    registry = packet.SchemaRegistry.all_schemas_from_filesystem()
    root = Path(str(packet.get_schema_root()))
    out = []
    for version in sorted(registry.known_versions, key=_version_key):
        schema_id = int(registry.get_by_version(version).get_schema_id())
        out.append(SchemaVersion(version, schema_id, root.joinpath(*version.split("."))))
    return tuple(out)


@cache
def latest_version() -> str:
    """The package's latest schema version (``schema/latest.txt``), e.g. ``"11.1"``."""
    major, minor = _packet().get_latest_schema_version()
    return f"{major}.{minor}"


def get_version(version: str | None = None) -> SchemaVersion:
    """The schema version ``version`` (default: the latest); ConfigurationError if unknown."""
    wanted = version or latest_version()
    for entry in schema_versions():
        if entry.version == wanted:
            return entry
    known = ", ".join(v.version for v in schema_versions())
    raise ConfigurationError(f"unknown Rubin alert schema version {wanted!r} (known: {known})")


def version_of_schema_id(schema_id: int) -> SchemaVersion:
    """The schema version that Rubin's registry numbers ``schema_id``; DataError if unknown."""
    for entry in schema_versions():
        if entry.schema_id == schema_id:
            return entry
    known = ", ".join(str(v.schema_id) for v in schema_versions())
    raise DataError(f"unknown Rubin alert schema id {schema_id} (known: {known})")


@cache
def alert_schema(version: str | None = None) -> dict[str, Any]:
    """The parsed Avro schema of an alert version (its diaSource, diaObject... files loaded with
    it), for fastavro's readers and writers."""
    entry = get_version(version)
    schema = fastavro.schema.load_schema(str(entry.alert_file), _write_hint=False)
    if not isinstance(schema, dict):
        raise DataError(f"{entry.alert_file} is not an Avro record schema")
    return schema


def _record_fields(schema: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    """The fields of the record type that ``schema``'s field ``field`` holds (through a
    nullable union or an array)."""
    for f in schema["fields"]:
        if f["name"] != field:
            continue
        kinds = f["type"] if isinstance(f["type"], list) else [f["type"]]
        for kind in kinds:
            if isinstance(kind, dict) and kind.get("type") == "array":
                kind = kind["items"]
            if isinstance(kind, dict) and kind.get("type") == "record":
                return list(kind["fields"])
    raise DataError(f"alert schema {schema.get('name')} has no record field {field!r}")


@cache
def record_fields(record: str, version: str | None = None) -> tuple[dict[str, Any], ...]:
    """The fields of the alert's ``diaObject``, ``diaSource`` or ``prvDiaForcedSources`` record
    in a schema version."""
    return tuple(_record_fields(alert_schema(version), record))
