"""Rubin alert packets: Rubin's schema versions and sample alerts, read from the installed
``lsst-alert-packet`` package (the ``rubin`` extra), and the features this project takes from a
packet. Pure functions, shared by the simulator and the service's LSST adapter.

Where the facts come from (``lsst/alert/packet/`` in site-packages, package 30.2026.2700):

- the schema versions and Rubin's registry ids: ``SchemaRegistry.all_schemas_from_filesystem()``
  over ``schema/<major>/<minor>/lsst.v<major>_<minor>.alert.avsc`` (3.0 ... 11.1) and
  ``Schema.get_schema_id()`` (major * 100 + minor: 7.1 -> 701, 11.1 -> 1101); the latest version
  from ``schema/latest.txt``;
- the sample alerts: ``schema/<major>/<minor>/sample_data/fakeAlert.avro`` (an Avro container of
  ``alert.json``);
- the diaObject summaries: the record ``lsst.v<M>_<m>.diaObject`` (file
  ``lsst.v<M>_<m>.diaObject.avsc``) that the alert's ``diaObject`` field holds. Every field whose
  name starts with a band (``u g r i z y``) is a per-band summary: ``r_psfFluxMean``,
  ``r_psfFluxMeanErr``, ``r_psfFluxSigma``, ``r_psfFluxNdata``, ``r_fpFluxMean``,
  ``r_fpFluxMeanErr`` in every version; ``r_psfFluxChi2`` and ``r_fpFluxSigma`` up to 7.4;
  ``r_psfFluxErrMean`` from 6.0; ``r_scienceFluxMean(Err)``, ``r_psfFluxMin``, ``r_psfFluxMax`` and
  ``r_psfFluxMaxSlope`` from 8.0; ``r_lcPeriodic01-32``/``r_lcNonPeriodic01-20`` up to 5.0.
  Versions 3.0 and 4.0 spell them ``rPSFluxMean``, ``rFPFluxMean``, ``rLcPeriodic01``: they are
  read under today's names (:func:`canonical_diaobject_name`), as ZTF's 2023 feature names are.
  Of the tutorial's seven DP1 DiaObject columns (``TUTORIAL_FIELDS``) the alert packets carry
  ``psfFluxMean`` and ``psfFluxSigma`` in every version and ``psfFluxChi2`` up to 7.4; skewness,
  Stetson J and the linear fit are DP1/APDB columns that no alert version carries (the
  light-curve features below give their equivalents);
- the light curves: ``diaSource`` and ``prvDiaSources`` (difference-image detections:
  ``psfFlux``/``psfFluxErr`` in nJy, ``midpointMjdTai``, ``band``; 3.0/4.0: ``psFlux``,
  ``psFluxErr``, ``midPointTai``, ``filterName``) and ``prvDiaForcedSources`` (forced photometry
  on the difference images, same fields; 6.0-7.4 and 3.0/4.0 have no ``band``-less variant).

Features (:func:`diaobject_features`, :func:`lightcurve_features`) are named so that they cannot
collide: diaObject fields keep the schema's names (``r_psfFluxMean``), light-curve features are
``lc_<band>_<feature>`` with the ``light-curve`` package's feature names (``lc_r_skew``).
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import fastavro
import numpy as np

from models.exceptions import ConfigurationError, DataError
from models.extras import RUBIN, require

BANDS: Final[tuple[str, ...]] = ("u", "g", "r", "i", "z", "y")
# The DP1 DiaObject columns of the Rubin anomaly-detection tutorial (r band).
TUTORIAL_FIELDS: Final[tuple[str, ...]] = (
    "psfFluxChi2",
    "psfFluxLinearIntercept",
    "psfFluxSkew",
    "psfFluxStetsonJ",
    "psfFluxMean",
    "psfFluxLinearSlope",
    "psfFluxSigma",
)
LIGHTCURVE_PREFIX: Final = "lc_"
CONFLUENT_MAGIC: Final = 0
EXTRA: Final = RUBIN

_BAND_FIELD = re.compile(r"^([ugrizy])_(\w+)$")
_OLD_BAND_FIELD = re.compile(r"^([ugrizy])(PS|FP|Lc)(\w+)$")
_OLD_PREFIX: Final = {"PS": "psf", "FP": "fp", "Lc": "lc"}


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


def canonical_diaobject_name(name: str) -> str:
    """Today's name of a diaObject field: 3.0/4.0's ``rPSFluxMean`` -> ``r_psfFluxMean``,
    ``rFPFluxSigma`` -> ``r_fpFluxSigma``, ``rLcPeriodic01`` -> ``r_lcPeriodic01``; other names
    unchanged."""
    old = _OLD_BAND_FIELD.match(name)
    if old:
        band, prefix, rest = old.groups()
        return f"{band}_{_OLD_PREFIX[prefix]}{rest}"
    return name


@cache
def _band_field(name: str) -> str | None:
    """Today's name of a per-band diaObject field; None for any other field."""
    canonical = canonical_diaobject_name(name)
    return canonical if _BAND_FIELD.match(canonical) else None


def _is_band_field(name: str) -> bool:
    return _band_field(name) is not None


@cache
def diaobject_fields(version: str | None = None) -> tuple[str, ...]:
    """The per-band summary fields of a version's diaObject, under today's names, in the
    schema's order."""
    return tuple(
        canonical_diaobject_name(f["name"])
        for f in record_fields("diaObject", version)
        if _is_band_field(f["name"])
    )


@cache
def common_diaobject_fields() -> tuple[str, ...]:
    """The per-band diaObject fields that every shipped schema version carries (in the latest
    version's order): the features a model can use on any Rubin alert."""
    shared = set(diaobject_fields(latest_version()))
    for entry in schema_versions():
        shared &= set(diaobject_fields(entry.version))
    return tuple(n for n in diaobject_fields(latest_version()) if n in shared)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool | str | bytes):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def diaobject_features(
    alert: Mapping[str, Any], version: str | None = None
) -> dict[str, float | None]:
    """The per-band diaObject summaries of an alert packet (a decoded record), named as the
    schema names them today (``r_psfFluxMean``); None where null, absent or not finite.

    With ``version``, every per-band field of that version is returned (absent ones None, as for
    Rubin's sparse sample ``alert.json``); without it, the per-band fields the alert's diaObject
    holds (a decoded packet holds every field of its version). An alert without a diaObject gives
    an empty mapping for the coverage guard to judge."""
    obj = alert.get("diaObject")
    if not isinstance(obj, Mapping):
        return dict.fromkeys(diaobject_fields(version)) if version else {}
    band_fields = ((_band_field(k), v) for k, v in obj.items())
    values = {name: v for name, v in band_fields if name is not None}
    names = diaobject_fields(version) if version else tuple(values)
    return {name: _number(values.get(name)) for name in names}


# --- light curves ----------------------------------------------------------------------------
# light-curve extractors (Malanchev et al. 2021) computed per band on the difference flux (nJy):
# the tutorial's skewness, Stetson index, linear fit and reduced chi2, and common variability
# statistics. Names are light-curve's, prefixed lc_<band>_.
def _extractor() -> Any:
    lc = require("light_curve", RUBIN, "Rubin light-curve features")
    return lc.Extractor(
        lc.Amplitude(),
        lc.BeyondNStd(1.0),
        lc.Cusum(),
        lc.EtaE(),
        lc.ExcessVariance(),
        lc.InterPercentileRange(0.1),
        lc.Kurtosis(),
        lc.LinearFit(),
        lc.MaximumSlope(),
        lc.Mean(),
        lc.ReducedChi2(),
        lc.Skew(),
        lc.StandardDeviation(),
        lc.StetsonK(),
        lc.WeightedMean(),
    )


@cache
def _cached_extractor() -> Any:
    return _extractor()


@cache
def lightcurve_feature_names() -> tuple[str, ...]:
    """``lc_<band>_<name>`` for every band and light-curve feature, in band order."""
    names = tuple(_cached_extractor().names)
    return tuple(f"{LIGHTCURVE_PREFIX}{band}_{name}" for band in BANDS for name in names)


@dataclass(frozen=True)
class Photometry:
    """A packet's difference-flux light curve: time (MJD TAI), band, flux and error (nJy), and
    whether the point is a detection (diaSource) or forced photometry."""

    mjd: np.ndarray
    band: np.ndarray  # band names
    flux: np.ndarray
    flux_err: np.ndarray
    detected: np.ndarray


def _source_values(source: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
    mjd = source.get("midpointMjdTai", source.get("midPointTai"))
    band = source.get("band", source.get("filterName"))
    flux = source.get("psfFlux", source.get("psFlux"))
    err = source.get("psfFluxErr", source.get("psFluxErr"))
    return mjd, band, flux, err


def photometry(alert: Mapping[str, Any]) -> Photometry:
    """The difference-flux light curve of a packet: its diaSource and prvDiaSources
    (detections), and its prvDiaForcedSources at the epochs without a detection in that band;
    points without a finite time, band, flux or positive error are left out; sorted by time."""
    detections: list[Mapping[str, Any]] = []
    if isinstance(alert.get("diaSource"), Mapping):
        detections.append(alert["diaSource"])
    detections += [s for s in alert.get("prvDiaSources") or () if isinstance(s, Mapping)]
    forced = [s for s in alert.get("prvDiaForcedSources") or () if isinstance(s, Mapping)]
    rows: list[tuple[float, str, float, float, bool]] = []
    seen: set[tuple[str, float]] = set()
    for sources, detected in ((detections, True), (forced, False)):
        for source in sources:
            mjd, band, flux, err = _source_values(source)
            t, f, e = _number(mjd), _number(flux), _number(err)
            if t is None or f is None or e is None or e <= 0 or band not in BANDS:
                continue
            key = (str(band), round(t, 5))
            if key in seen:  # forced photometry of an epoch with a detection, or a duplicate
                continue
            seen.add(key)
            rows.append((t, str(band), f, e, detected))
    rows.sort(key=lambda r: (r[0], r[1]))
    return Photometry(
        np.array([r[0] for r in rows], dtype=np.float64),
        np.array([r[1] for r in rows], dtype=object),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.array([r[3] for r in rows], dtype=np.float64),
        np.array([r[4] for r in rows], dtype=bool),
    )


def lightcurve_features(alert: Mapping[str, Any]) -> dict[str, float | None]:
    """light-curve features of a packet's difference-flux light curve (:func:`photometry`), per
    band: ``lc_<band>_<feature>``; None where a band has too few points for a feature."""
    extractor = _cached_extractor()
    names = tuple(extractor.names)
    lc = photometry(alert)
    out: dict[str, float | None] = {}
    for band in BANDS:
        sel = lc.band == band
        t, f, e = lc.mjd[sel], lc.flux[sel], lc.flux_err[sel]
        if t.size:
            keep = np.concatenate([[True], np.diff(t) > 0])  # strictly increasing times
            t, f, e = t[keep], f[keep], e[keep]
        values: Iterable[float]
        if t.size >= 2:
            values = extractor(t, f, e, sorted=True, check=False, fill_value=np.nan)
        else:
            values = [math.nan] * len(names)
        for name, value in zip(names, values, strict=True):
            out[f"{LIGHTCURVE_PREFIX}{band}_{name}"] = _number(value)
    return out


# --- wire formats ----------------------------------------------------------------------------
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


# --- feature sets of LSST models -------------------------------------------------------------
FEATURE_SETS: Final[tuple[str, ...]] = ("diaobject", "diaobject-latest", "diaobject+lightcurve")
DEFAULT_FEATURE_SET: Final = "diaobject"


def feature_set(name: str = DEFAULT_FEATURE_SET) -> tuple[str, ...]:
    """The features of an LSST model: ``diaobject``, the per-band diaObject fields every schema
    version carries (so that alerts of every version are scored); ``diaobject-latest``, every
    per-band field of the latest version; ``diaobject+lightcurve``, the first plus the
    light-curve features of the packet's history."""
    if name == "diaobject":
        return common_diaobject_fields()
    if name == "diaobject-latest":
        return diaobject_fields(latest_version())
    if name == "diaobject+lightcurve":
        return common_diaobject_fields() + lightcurve_feature_names()
    raise ConfigurationError(
        f"unknown LSST feature set {name!r} (known: {', '.join(FEATURE_SETS)})"
    )
