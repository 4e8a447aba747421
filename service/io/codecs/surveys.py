"""Surveys and what their inputs look like: where a record keeps its object id, its features
and its top-level class probabilities, and what its features are called.

ZTF's input is the record ALeRCE's light-curve classifier step publishes, in one of three
published versions (``schemas/ztf-lc-classifier/<version>``: 1 and 2 keyed by ``aid``, 3 - the
current one - by ``oid``; features a record of named fields in 1, a map since 2). Feature names
are taken to today's ALeRCE naming (:func:`models.features.canonical_name`), so a stream with
ALeRCE's 2023 names scores with the same models.

Rubin/LSST reads Rubin's own alert packets, every schema version that lsst-alert-packet ships
(:mod:`models.rubin`; the ``rubin`` extra): the features are the per-band summaries of the
packet's ``diaObject`` and, when a model uses them (names ``lc_<band>_<feature>``), light-curve
features of its history. A packet carries no classifier probabilities: it goes to the survey's
unrouted model (class ``All``). Records with probabilities (``schemas/lsst-lc-classifier``,
keyed by ``diaObjectId``) are routed as ZTF's are. A new survey or version is one entry here
plus its schema under ``schemas/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from models import rubin
from models.exceptions import AlertAnomalyError
from models.features import canonical_name
from models.resources import schemas_dir
from service.core.validation import reject
from service.exceptions import SettingsError
from service.io.codecs.avro import Projection, read_all

RecordParser = Callable[[Any], "Alert"]


@dataclass(frozen=True)
class Alert:
    """What the pipeline needs from one decoded record."""

    oid: str
    features: Mapping[str, Any]
    top_probabilities: Mapping[str, Any]


@dataclass(frozen=True)
class Survey:
    name: str
    versions: dict[str, Path]  # classifier-record version -> schema file, under schemas/
    current: str | None  # the default version; None: the latest alert-packet version
    id_fields: tuple[str, ...]  # where an object id may be, first match wins
    canonical: Callable[[str], str]  # feature name -> the name bundles use
    alert_packets: bool = False  # also reads the survey's alert packets (Rubin's)

    def default_version(self) -> str:
        return self.current if self.current is not None else _rubin(rubin.latest_version)

    def schema_path(self, version: str | None = None) -> Path:
        """The schema file of a classifier-record version (default: the current one)."""
        version = version or self.default_version()
        try:
            return schemas_dir() / self.versions[version]
        except KeyError:
            raise SettingsError(
                f"{self.name} has no record version {version!r} (known: {self.known()})"
            ) from None

    def known(self) -> str:
        versions = sorted(self.versions)
        if self.alert_packets:
            versions.append("the alert-packet versions of lsst-alert-packet")
        return ", ".join(versions)

    def schema(self, version: str | None = None) -> dict[str, Any]:
        """The Avro schema of a classifier-record or alert-packet version (default: the
        current one)."""
        version = version or self.default_version()
        if version not in self.versions and self.alert_packets:
            packet: dict[str, Any] = _rubin(rubin.alert_schema, version)
            return packet
        return _read_schema(self.schema_path(version))

    def packet_schemas(self) -> dict[int, dict[str, Any]]:
        """Rubin's registry id -> alert-packet schema, for every shipped version (none for a
        survey without alert packets)."""
        if not self.alert_packets:
            return {}
        versions = _rubin(rubin.schema_versions)
        return {v.schema_id: _rubin(rubin.alert_schema, v.version) for v in versions}

    def parser(self, lightcurves: bool = False) -> RecordParser:
        """Record -> :class:`Alert`: alert packets (light-curve features too if
        ``lightcurves``) and classifier records."""
        if not self.alert_packets:
            return self.parse

        def parse(record: Any) -> Alert:
            if is_packet(record):
                return _packet_alert(record, lightcurves)
            return self.parse(record)

        return parse

    def projection(self, lightcurves: bool) -> Projection:
        """Writer schema -> the reader schema of what parsing needs (None: all of it): without
        light-curve features, an alert packet's history and cutouts are skipped, not built."""
        if not self.alert_packets or lightcurves:
            return read_all
        return _packet_without_history

    def parse(self, record: Any) -> Alert:
        """Extract an :class:`Alert`; an InputError (:mod:`service.core.validation`) says what
        is wrong with the record."""
        if not isinstance(record, Mapping):
            raise reject("not_a_record", type=type(record).__name__)
        oid = next((record[f] for f in self.id_fields if f in record), None)
        if oid is None or isinstance(oid, bool) or not isinstance(oid, str | int) or oid == "":
            raise reject("no_object_id", fields=" or ".join(repr(f) for f in self.id_fields))
        features = record.get("features") or {}
        if not isinstance(features, Mapping):
            raise reject("features_not_a_map")
        classification = record.get("lc_classification")
        hierarchical = (
            classification.get("hierarchical") if isinstance(classification, Mapping) else None
        )
        top = hierarchical.get("top") if isinstance(hierarchical, Mapping) else None
        if not isinstance(top, Mapping) or not top:
            raise reject("no_probabilities")
        return Alert(str(oid), features, top)


def is_packet(record: Any) -> bool:
    """Whether a decoded record is a Rubin alert packet (not a classifier record)."""
    return isinstance(record, Mapping) and "diaSource" in record


def _packet_alert(packet: Mapping[str, Any], lightcurves: bool) -> Alert:
    """A Rubin alert packet's object id and features; it has no classifier probabilities."""
    obj = packet.get("diaObject")
    if not isinstance(obj, Mapping):
        raise reject("no_object")
    oid = obj.get("diaObjectId")
    if isinstance(oid, bool) or not isinstance(oid, int):
        raise reject("object_id_not_an_integer", value=oid)
    features = rubin.diaobject_features(packet)
    if lightcurves:
        features |= rubin.lightcurve_features(packet)
    return Alert(str(oid), features, {})


# The top-level fields of a Rubin alert packet that parsing reads without light-curve features.
PACKET_FIELDS = frozenset({"alertId", "diaSourceId", "diaSource", "diaObject"})


def _packet_without_history(schema: Any) -> Any:
    """The reader schema of a Rubin alert packet without its history and cutouts (fastavro
    skips what the reader schema leaves out); None for any other schema."""
    fields = schema.get("fields") if isinstance(schema, Mapping) else None
    if not fields:
        return None
    names = {f["name"] for f in fields}
    if "diaObject" not in names or names <= PACKET_FIELDS:
        return None
    reader = {k: v for k, v in schema.items() if not k.startswith("__")}
    reader["fields"] = [f for f in fields if f["name"] in PACKET_FIELDS]
    return fastavro.parse_schema(reader)


def _rubin(function: Callable[..., Any], *args: Any) -> Any:
    """A models.rubin function; a missing extra or an unknown version is a SettingsError."""
    try:
        return function(*args)
    except AlertAnomalyError as exc:
        raise SettingsError(str(exc)) from exc


@cache
def _read_schema(path: Path) -> dict[str, Any]:
    with open(path) as fh:
        loaded: dict[str, Any] = json.load(fh)
    return loaded


def _same(name: str) -> str:
    return name


SURVEYS: dict[str, Survey] = {
    "ztf": Survey(
        "ztf",
        {v: Path("ztf-lc-classifier", v, "probabilities_and_features.avsc") for v in "123"},
        current="3",
        id_fields=("oid", "aid"),
        canonical=canonical_name,
    ),
    "lsst": Survey(
        "lsst",
        {"1.0": Path("lsst-lc-classifier", "1.0", "probabilities_and_features.avsc")},
        current=None,
        id_fields=("diaObjectId",),
        canonical=_same,
        alert_packets=True,
    ),
}


def get_survey(name: str) -> Survey:
    try:
        return SURVEYS[name]
    except KeyError:
        raise SettingsError(f"unknown survey {name!r} (known: {', '.join(SURVEYS)})") from None
