"""Surveys and the versions of their classifier records: where a record keeps its object id,
its features and its top-level class probabilities, and what its features are called.

ZTF's input is the record ALeRCE's light-curve classifier step publishes, in one of three
published versions (``schemas/ztf-lc-classifier/<version>``: 1 and 2 keyed by ``aid``, 3 - the
current one - by ``oid``; features a record of named fields in 1, a map since 2). Feature names
are taken to today's ALeRCE naming (:func:`models.features.canonical_name`), so a stream with
ALeRCE's 2023 names scores with the same models. Rubin/LSST is a second survey with a record of
the same shape keyed by ``diaObjectId``. A new survey or version is one entry here plus its
schema under ``schemas/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from models.features import canonical_name
from models.resources import schemas_dir
from service.exceptions import InputError, SettingsError


@dataclass(frozen=True)
class Alert:
    """What the pipeline needs from one decoded record."""

    oid: str
    features: Mapping[str, Any]
    top_probabilities: Mapping[str, Any]


@dataclass(frozen=True)
class Survey:
    name: str
    versions: dict[str, Path]  # record version -> schema file, relative to schemas/
    current: str
    id_fields: tuple[str, ...]  # where an object id may be, first match wins
    canonical: Callable[[str], str]  # feature name -> the name bundles use

    def schema_path(self, version: str | None = None) -> Path:
        """The schema file of a record version (default: the current one)."""
        version = version or self.current
        try:
            return schemas_dir() / self.versions[version]
        except KeyError:
            known = ", ".join(sorted(self.versions))
            raise SettingsError(
                f"{self.name} has no record version {version!r} (known: {known})"
            ) from None

    def schema(self, version: str | None = None) -> dict[str, Any]:
        """The unparsed Avro schema of a record version."""
        return _read_schema(self.schema_path(version))

    def parse(self, record: Any) -> Alert:
        """Extract an :class:`Alert`; an InputError says what is wrong with the record."""
        if not isinstance(record, Mapping):
            raise InputError("invalid_record", f"expected a record, got {type(record).__name__}")
        oid = next((record[f] for f in self.id_fields if f in record), None)
        if oid is None or isinstance(oid, bool) or not isinstance(oid, str | int) or oid == "":
            names = " or ".join(repr(f) for f in self.id_fields)
            raise InputError("invalid_record", f"record has no usable {names}")
        features = record.get("features") or {}
        if not isinstance(features, Mapping):
            raise InputError("invalid_record", "'features' is not a map or record")
        classification = record.get("lc_classification")
        hierarchical = (
            classification.get("hierarchical") if isinstance(classification, Mapping) else None
        )
        top = hierarchical.get("top") if isinstance(hierarchical, Mapping) else None
        if not isinstance(top, Mapping) or not top:
            raise InputError(
                "missing_probabilities", "record has no lc_classification.hierarchical.top"
            )
        return Alert(str(oid), features, top)


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
        current="1.0",
        id_fields=("diaObjectId",),
        canonical=_same,
    ),
}


def get_survey(name: str) -> Survey:
    try:
        return SURVEYS[name]
    except KeyError:
        raise SettingsError(f"unknown survey {name!r} (known: {', '.join(SURVEYS)})") from None
