"""Rubin alert packets of simulated LSST light curves (:mod:`models.simulate.lsst`).

A packet (:func:`alert_packet`) is the alert of the object's last detection: its diaSource, the
detections and forced photometry of the previous 365 days (prvDiaSources, prvDiaForcedSources)
and the diaObject with the summaries Rubin's ``ap_association`` computes
(``diaCalculationPlugins``: inverse-variance weighted means and their errors, the standard
deviation with ddof=1, counts, minimum, maximum, maximum slope, mean error) over every detection
(``psfFlux*``, ``scienceFlux*``) and forced measurement (``fpFlux*``) so far. Fields the simulator
does not model are null where the schema allows it, else neutral (pixel positions, zero counts).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from models import rubin
from models.simulate.lsst import BANDS, HISTORY_DAYS, LsstLightCurve
from models.simulate.survey import FloatArray


def _blank(record: str, version: str | None) -> dict[str, Any]:
    """Every field of a record of the alert schema: null where allowed, else a neutral value."""
    out: dict[str, Any] = {}
    for field in rubin.record_fields(record, version):
        kind = field["type"]
        if isinstance(kind, list) and "null" in kind:
            out[field["name"]] = None
        elif kind in ("int", "long"):
            out[field["name"]] = 0
        elif kind in ("float", "double"):
            out[field["name"]] = 0.0
        elif kind == "boolean":
            out[field["name"]] = False
        else:
            out[field["name"]] = "" if kind == "string" else None
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


def alert_packet(
    curve: LsstLightCurve, object_id: int, ra: float, dec: float, version: str | None = None
) -> dict[str, Any]:
    """The Rubin alert packet of the object's last detection, valid against ``version``'s schema
    (default: the latest)."""
    version = version or rubin.latest_version()
    det_index = np.flatnonzero(curve.detected)
    alert_i = int(det_index[-1])
    t_alert = float(curve.mjd[alert_i])
    base = (object_id % 10**12) * 10**4

    def dia_source(i: int, k: int) -> dict[str, Any]:
        mjd = float(curve.mjd[i])
        visit = _visit(mjd)
        record = _blank("diaSource", version)
        record.update(
            diaSourceId=base + k, visit=visit, detector=visit % 189, diaObjectId=object_id,
            midpointMjdTai=mjd, ra=ra, dec=dec, x=float(visit % 4000) + 0.5,
            y=float((visit * 7) % 4000) + 0.5, band=BANDS[int(curve.band[i])],
            psfFlux=float(curve.diff[i]), psfFluxErr=float(curve.diff_err[i]),
            scienceFlux=float(curve.science[i]), scienceFluxErr=float(curve.science_err[i]),
            snr=float(abs(curve.diff[i]) / curve.diff_err[i]),
            timeProcessedMjdTai=mjd + 60.0 / 86400.0, bboxSize=30,
        )  # fmt: skip
        return record

    def forced_source(i: int, k: int) -> dict[str, Any]:
        mjd = float(curve.mjd[i])
        visit = _visit(mjd)
        record = _blank("prvDiaForcedSources", version)
        record.update(
            diaForcedSourceId=base + 5000 + k, diaObjectId=object_id, ra=ra, dec=dec,
            visit=visit, detector=visit % 189, midpointMjdTai=mjd,
            band=BANDS[int(curve.band[i])], psfFlux=float(curve.diff[i]),
            psfFluxErr=float(curve.diff_err[i]), scienceFlux=float(curve.science[i]),
            scienceFluxErr=float(curve.science_err[i]), timeProcessedMjdTai=mjd + 60.0 / 86400.0,
        )  # fmt: skip
        return record

    recent = curve.mjd >= t_alert - HISTORY_DAYS
    before = np.arange(len(curve)) < alert_i
    prv = [
        dia_source(int(i), k)
        for k, i in enumerate(det_index)
        if i != alert_i and recent[i] and before[i]
    ]
    prv_forced = [forced_source(int(i), k) for k, i in enumerate(np.flatnonzero(recent & before))]
    fields = rubin.diaobject_fields(version)
    dia_object = _blank("diaObject", version)
    dia_object.update(diaobject_summaries(curve, fields))
    detected_times = curve.mjd[det_index]
    dia_object.update(
        diaObjectId=object_id,
        validityStartMjdTai=t_alert,
        ra=ra,
        dec=dec,
        firstDiaSourceMjdTai=float(detected_times[0]),
        lastDiaSourceMjdTai=t_alert,
        nDiaSources=int(det_index.size),
    )
    dia_object = {k: v for k, v in dia_object.items() if k in _field_names("diaObject", version)}
    alert = _blank_alert(version)
    source = dia_source(alert_i, len(det_index) - 1)
    alert.update(
        diaSourceId=source["diaSourceId"],
        diaSource=source,
        prvDiaSources=prv,
        prvDiaForcedSources=prv_forced,
        diaObject=dia_object,
    )
    return alert


def _field_names(record: str, version: str | None) -> set[str]:
    return {f["name"] for f in rubin.record_fields(record, version)}


def _blank_alert(version: str | None) -> dict[str, Any]:
    schema = rubin.alert_schema(version)
    return {
        f["name"]: None
        for f in schema["fields"]
        if isinstance(f["type"], list) and "null" in f["type"]
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
