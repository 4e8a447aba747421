"""The per-band diaObject summaries of a Rubin alert packet (``r_psfFluxMean``...): the fields of
each schema version under today's names, those every version carries, and their values in a
decoded packet."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import cache
from typing import Any, Final

from models.rubin.schemas import latest_version, record_fields, schema_versions

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

_BAND_FIELD = re.compile(r"^([ugrizy])_(\w+)$")
_OLD_BAND_FIELD = re.compile(r"^([ugrizy])(PS|FP|Lc)(\w+)$")
_OLD_PREFIX: Final = {"PS": "psf", "FP": "fp", "Lc": "lc"}


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
def band_field(name: str) -> str | None:
    """Today's name of a per-band diaObject field (``rPSFluxMean`` -> ``r_psfFluxMean``); None
    for any other field."""
    canonical = canonical_diaobject_name(name)
    return canonical if _BAND_FIELD.match(canonical) else None


def _is_band_field(name: str) -> bool:
    return band_field(name) is not None


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


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float; None when it is null, not a number or not finite."""
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
    band_fields = ((band_field(k), v) for k, v in obj.items())
    values = {name: v for name, v in band_fields if name is not None}
    names = diaobject_fields(version) if version else tuple(values)
    return {name: finite_or_none(values.get(name)) for name in names}
