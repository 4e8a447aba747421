"""Rubin alert packets of simulated LSST light curves (:mod:`models.simulate.lsst`), for every
schema version lsst-alert-packet ships, in Rubin's size and shape.

A packet (:func:`alert_packet`) is the alert of the object's last detection, as Rubin's
``ap_association`` packs it (``packageAlerts.py``; prompt-products.lsst.io, "Alert packets"):
the triggering diaSource; the diaSources (prvDiaSources) and forced measurements on the
difference images (prvDiaForcedSources) of the past 12 months (HISTORY_DAYS); the diaObject with
the summaries ``diaCalculationPlugins`` computes (inverse-variance weighted means and their
errors, standard deviation with ddof=1, counts, minimum, maximum, maximum slope, mean error)
over every detection (``psfFlux*``, ``scienceFlux*``) and forced measurement (``fpFlux*``) so
far; and the cutouts of the difference, science and template images as FITS bytes of Rubin's
stamp size and layout (:mod:`models.simulate.cutouts`; versions before 6.1 have no science
cutout).

Nulls: a field is null where the schema's documentation says Rubin sets it null for such an
alert (``ssObjectId`` of a source associated with a diaObject, ``parentDiaSourceId`` of a source
not deblended, ``timeWithdrawnMjdTai`` of a measurement not withdrawn; the alert's ``ssSource``,
``ssObject``, ``mpc_orbits``/``MPCORB`` of a non-Solar-System object; ``prvDiaNondetectionLimits``,
which packageAlerts sets to None). The other fields of diaSources and diaForcedSources are
filled, as Rubin measures them: those the simulator models with its values, the others with
placeholder values of their type (drawn once per packet and record type, shared by the packet's
records, from a generator seeded by the diaObjectId: packets are deterministic and the light
curves' draws are untouched). Which nullable fields Rubin leaves unpopulated today is not
documented field by field (prompt-products.lsst.io: "Some fields in the records are not yet
populated"), so these packets are at the full size the schema allows. The diaObject keeps null the
per-band summaries the simulator does not compute (so that the diaObject features, and the
scores of the committed bundles, do not change); its other fields are filled.

Over 300 lines on purpose: a packet's records, their filling for every schema version and the
diaObject's summaries are built together and read best in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

import numpy as np

from models import rubin
from models.rubin.diaobject import canonical_diaobject_name
from models.simulate import cutouts
from models.simulate.lsst import BANDS, HISTORY_DAYS, LsstLightCurve
from models.simulate.survey import FloatArray

# Null by the schema's documentation for a diaObject's alert (see the module docstring).
NULL_FIELDS: Final = frozenset(
    {"ssObjectId", "parentDiaSourceId", "timeWithdrawnMjdTai", "ssSource", "ssObject",
     "mpc_orbits", "MPCORB", "prvDiaNondetectionLimits"}
)  # fmt: skip
# Older schema versions' names of the values the simulator sets (today's name -> old name).
OLD_NAMES: Final = {
    "midPointTai": "midpointMjdTai", "filterName": "band", "psFlux": "psfFlux",
    "psFluxErr": "psfFluxErr", "totFlux": "scienceFlux", "totFluxErr": "scienceFluxErr",
    "decl": "dec", "alertId": "diaSourceId",
}  # fmt: skip
_UNIX_EPOCH_MJD: Final = 40587.0


def _kind(avro_type: Any) -> tuple[str, bool]:
    nullable = isinstance(avro_type, list) and "null" in avro_type
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        avro_type = rest[0] if len(rest) == 1 else "union"
    if isinstance(avro_type, dict):
        return str(avro_type.get("logicalType") or avro_type.get("type")), nullable
    return str(avro_type), nullable


@dataclass(frozen=True)
class _Plan:
    """How to fill a record of one schema version: its fields by what they get."""

    names: frozenset[str]
    old: tuple[tuple[str, str], ...]  # (field, today's name of its value)
    null: tuple[str, ...]  # null by Rubin's documentation
    micros: tuple[str, ...]  # timestamp-micros
    by_kind: tuple[tuple[str, tuple[str, ...]], ...]  # placeholders: (kind, fields)


def _plan(fields: list[dict[str, Any]]) -> _Plan:
    kinds = [(f["name"], *_kind(f["type"])) for f in fields]
    null = tuple(n for n, _, nullable in kinds if nullable and n in NULL_FIELDS)
    micros = tuple(n for n, k, _ in kinds if k == "timestamp-micros")
    groups: dict[str, list[str]] = {}
    for name, kind, _ in kinds:
        if name not in null and name not in micros:
            groups.setdefault(kind, []).append(name)
    return _Plan(
        frozenset(n for n, _, _ in kinds),
        tuple((n, OLD_NAMES[n]) for n, _, _ in kinds if n in OLD_NAMES),
        null,
        micros,
        tuple((k, tuple(names)) for k, names in groups.items()),
    )


@cache
def _record_plan(record: str, version: str) -> _Plan:
    return _plan(list(rubin.record_fields(record, version)))


@cache
def _alert_plan(version: str) -> _Plan:
    return _plan(list(rubin.alert_schema(version)["fields"]))


def _placeholders(kind: str, u: np.ndarray) -> list[Any]:
    """Values of an Avro kind for fields the simulator does not model, from uniform draws."""
    if kind in ("float", "double"):
        return list((2.0 * u - 1.0).tolist())
    if kind in ("int", "long"):
        return list((1 + (99 * u).astype(np.int64)).tolist())
    if kind == "boolean":
        return list((u < 0.02).tolist())  # flags: mostly unset
    if kind == "string":
        return [f"s{int(1e5 * x):05d}" for x in u.tolist()]
    return [None] * u.size


def _defaults(plan: _Plan, rng: np.random.Generator) -> dict[str, Any]:
    """A record's nulls and placeholder values (drawn once per packet, shared by its records)."""
    out: dict[str, Any] = dict.fromkeys(plan.null)
    draws = rng.random(sum(len(names) for _, names in plan.by_kind))
    at = 0
    for kind, names in plan.by_kind:
        out.update(zip(names, _placeholders(kind, draws[at : at + len(names)]), strict=True))
        at += len(names)
    return out


def _record(plan: _Plan, values: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """A record: the given values (under today's or older names) over ``base`` (nulls and
    placeholders: :func:`_defaults`)."""
    out = dict(base)
    for name in plan.micros:
        out[name] = int(values["_micros"])
    out.update((k, v) for k, v in values.items() if k in plan.names)
    out.update((name, values[key]) for name, key in plan.old if key in values)
    return out


def _visit(mjd: float) -> int:
    return round((mjd - 60000.0) * 86400.0 / 40.0)  # one visit per 40 s slot


def _weighted(values: FloatArray, errors: FloatArray) -> tuple[float | None, float | None]:
    if values.size == 0:
        return None, None
    weights = 1.0 / errors**2
    return float(np.sum(values * weights) / np.sum(weights)), float(np.sqrt(1.0 / weights.sum()))


def diaobject_summaries(curve: LsstLightCurve, fields: tuple[str, ...]) -> dict[str, Any]:
    """The per-band summaries ap_association computes, for the fields the schema has."""
    out: dict[str, Any] = {}
    for b, band in enumerate(BANDS):
        det = curve.detected & (curve.band == b)
        forced = curve.band == b
        t, f, e = curve.mjd[det], curve.diff[det], curve.diff_err[det]
        mean, mean_err = _weighted(f, e)
        fp_mean, fp_err = _weighted(curve.diff[forced], curve.diff_err[forced])
        sci_mean, sci_err = _weighted(curve.science[det], curve.science_err[det])
        values: dict[str, Any] = {
            "psfFluxMean": mean,
            "psfFluxMeanErr": mean_err,
            "psfFluxSigma": float(np.std(f, ddof=1)) if f.size > 1 else None,
            "psfFluxChi2": float(np.sum(((f - mean) / e) ** 2)) if mean is not None else None,
            "psfFluxNdata": int(f.size),
            "fpFluxMean": fp_mean,
            "fpFluxMeanErr": fp_err,
            "fpFluxSigma": float(np.std(curve.diff[forced], ddof=1)) if forced.sum() > 1 else None,
            "scienceFluxMean": sci_mean,
            "scienceFluxMeanErr": sci_err,
            "psfFluxMin": float(f.min()) if f.size else None,
            "psfFluxMax": float(f.max()) if f.size else None,
            "psfFluxMaxSlope": float(np.max(np.diff(f) / np.diff(t))) if f.size > 1 else None,
            "psfFluxErrMean": float(e.mean()) if e.size else None,
        }
        for name, value in values.items():
            key = f"{band}_{name}"
            if key in fields:
                out[key] = value
    return out


def _micros(mjd: float) -> int:
    return round((mjd - _UNIX_EPOCH_MJD) * 86400e6)


def alert_packet(
    curve: LsstLightCurve, object_id: int, ra: float, dec: float, version: str | None = None
) -> dict[str, Any]:
    """The Rubin alert packet of the object's last detection, valid against ``version``'s schema
    (default: the latest); deterministic for (curve, object_id, ra, dec, version)."""
    version = version or rubin.latest_version()
    rng = np.random.default_rng(np.random.SeedSequence(object_id))
    det_index = np.flatnonzero(curve.detected)
    alert_i = int(det_index[-1])
    t_alert = float(curve.mjd[alert_i])
    base = (object_id % 10**12) * 10**4

    def measured(i: int) -> dict[str, Any]:
        mjd = float(curve.mjd[i])
        visit = _visit(mjd)
        processed = mjd + 60.0 / 86400.0
        return {
            "visit": visit, "detector": visit % 189, "ccdVisitId": visit * 1000 + visit % 189,
            "diaObjectId": object_id, "midpointMjdTai": mjd, "ra": ra, "dec": dec,
            "band": BANDS[int(curve.band[i])], "psfFlux": float(curve.diff[i]),
            "psfFluxErr": float(curve.diff_err[i]), "scienceFlux": float(curve.science[i]),
            "scienceFluxErr": float(curve.science_err[i]), "timeProcessedMjdTai": processed,
            "_micros": _micros(processed),
        }  # fmt: skip

    def dia_source(i: int, k: int) -> dict[str, Any]:
        values = measured(i)
        snr = float(abs(curve.diff[i]) / curve.diff_err[i])
        values.update(
            diaSourceId=base + k, x=float(values["visit"] % 4000) + 0.5,
            y=float((values["visit"] * 7) % 4000) + 0.5, snr=snr, flags=0, programId=0,
            bboxSize=cutouts.bbox_size(snr), apFlux=values["psfFlux"],
            apFluxErr=values["psfFluxErr"],
        )  # fmt: skip
        return values

    recent = curve.mjd >= t_alert - HISTORY_DAYS
    before = np.arange(len(curve)) < alert_i
    source_plan = _record_plan("diaSource", version)
    forced_plan = _record_plan("prvDiaForcedSources", version)
    source_base = _defaults(source_plan, rng)
    forced_base = _defaults(forced_plan, rng)
    prv: list[dict[str, Any]] | None = [
        _record(source_plan, dia_source(int(i), k), source_base)
        for k, i in enumerate(det_index)
        if i != alert_i and recent[i] and before[i]
    ]
    if det_index.size == 1:
        prv = None  # packageAlerts: no history for a diaObject of one diaSource
    prv_forced = []
    for k, i in enumerate(np.flatnonzero(recent & before)):
        values = measured(int(i))
        values["diaForcedSourceId"] = base + 5000 + k
        prv_forced.append(_record(forced_plan, values, forced_base))
    trigger = dia_source(alert_i, len(det_index) - 1)
    source = _record(source_plan, trigger, source_base)
    alert_values: dict[str, Any] = {
        "diaSourceId": trigger["diaSourceId"],
        "diaSource": source,
        "prvDiaSources": prv,
        "prvDiaForcedSources": prv_forced,
        "diaObject": _dia_object(curve, object_id, ra, dec, version, rng),
        "observation_reason": "wfd",  # the scheduler's metadata (RTN-097): placeholders
        "target_name": "lowdust_ecliptic",
        **_cutouts(trigger, rng),
    }
    plan = _alert_plan(version)
    return _record(plan, alert_values, _defaults(plan, rng))


def _dia_object(
    curve: LsstLightCurve,
    object_id: int,
    ra: float,
    dec: float,
    version: str,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """The diaObject: its per-band fields the simulator's summaries (null where it computes
    none), its other fields filled."""
    layout = [(f["name"], *_kind(f["type"])) for f in rubin.record_fields("diaObject", version)]
    canonical = {name: canonical_diaobject_name(name) for name, _, _ in layout}
    summaries = diaobject_summaries(curve, tuple(canonical.values()))
    band_fields = set(rubin.diaobject_fields(version))
    det_times = curve.mjd[curve.detected]
    values: dict[str, Any] = {}
    for name, kind, nullable in layout:
        if canonical[name] in band_fields:
            value = summaries.get(canonical[name])
            values[name] = value if value is not None or nullable else _zero(kind)
    t_alert = float(det_times[-1])
    values.update(
        diaObjectId=object_id, validityStartMjdTai=t_alert, validityStart=_micros(t_alert),
        ra=ra, dec=dec, firstDiaSourceMjdTai=float(det_times[0]),
        lastDiaSourceMjdTai=t_alert, nDiaSources=int(det_times.size), _micros=_micros(t_alert),
    )  # fmt: skip
    plan = _record_plan("diaObject", version)
    return _record(plan, values, _defaults(plan, rng))


def _zero(kind: str) -> int | float:
    return 0 if kind in ("int", "long") else 0.0


def _cutouts(trigger: Mapping[str, Any], rng: np.random.Generator) -> dict[str, bytes]:
    """The difference, science and template cutouts of the triggering diaSource; the template
    (a coadd) holds the reference flux at a third of the visit's error."""
    side = cutouts.cutout_side(int(trigger["bboxSize"]))
    corner = (int(trigger["x"]) - side // 2, int(trigger["y"]) - side // 2)
    science, science_err = trigger["scienceFlux"], trigger["scienceFluxErr"]
    fluxes = {
        "cutoutDifference": (trigger["psfFlux"], trigger["psfFluxErr"]),
        "cutoutScience": (science, science_err),
        "cutoutTemplate": (science - trigger["psfFlux"], science_err / 3.0),
    }
    ra, dec = trigger["ra"], trigger["dec"]
    return {
        kind: cutouts.cutout_fits(rng, side, flux, err, ra, dec, corner)
        for kind, (flux, err) in fluxes.items()
    }


def packet_features(packet: Mapping[str, Any], lightcurve: bool = True) -> dict[str, float | None]:
    """The table's features of a packet: its diaObject fields and (optionally) light-curve
    features, exactly as the service computes them (models.rubin)."""
    features = rubin.diaobject_features(packet)
    if lightcurve:
        features.update(rubin.lightcurve_features(packet))
    return features


def feature_names(lightcurve: bool = True) -> tuple[str, ...]:
    """The table's feature columns: every per-band diaObject field of the latest version, then
    the light-curve features."""
    names = rubin.diaobject_fields(rubin.latest_version())
    return names + (rubin.lightcurve_feature_names() if lightcurve else ())
