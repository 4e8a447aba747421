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

The module is split by concern: :mod:`models.rubin.schemas` (versions, ids, Avro schemas),
:mod:`models.rubin.diaobject` (diaObject fields and values), :mod:`models.rubin.lightcurves`
(photometry and light-curve features) and :mod:`models.rubin.packets` (wire formats, containers,
samples, validation); every public name is importable from here (``rubin.latest_version()``), as
are the feature sets of LSST models (:func:`feature_set`).
"""

from __future__ import annotations

from typing import Final

from models.exceptions import ConfigurationError
from models.extras import RUBIN
from models.rubin.diaobject import (
    TUTORIAL_FIELDS,
    canonical_diaobject_name,
    common_diaobject_fields,
    diaobject_features,
    diaobject_fields,
)
from models.rubin.lightcurves import (
    LIGHTCURVE_PREFIX,
    Photometry,
    lightcurve_feature_names,
    lightcurve_features,
    photometry,
)
from models.rubin.packets import (
    CONFLUENT_MAGIC,
    confluent_bytes,
    confluent_frame,
    parse_confluent,
    read_container,
    sample_alert_json,
    sample_alerts,
    serialize,
    validate,
    write_container,
)
from models.rubin.schemas import (
    BANDS,
    SchemaVersion,
    alert_schema,
    get_version,
    latest_version,
    record_fields,
    schema_versions,
    version_of_schema_id,
)

__all__ = [
    "BANDS",
    "CONFLUENT_MAGIC",
    "DEFAULT_FEATURE_SET",
    "EXTRA",
    "FEATURE_SETS",
    "LIGHTCURVE_PREFIX",
    "TUTORIAL_FIELDS",
    "Photometry",
    "SchemaVersion",
    "alert_schema",
    "canonical_diaobject_name",
    "common_diaobject_fields",
    "confluent_bytes",
    "confluent_frame",
    "diaobject_features",
    "diaobject_fields",
    "feature_set",
    "get_version",
    "latest_version",
    "lightcurve_feature_names",
    "lightcurve_features",
    "parse_confluent",
    "photometry",
    "read_container",
    "record_fields",
    "sample_alert_json",
    "sample_alerts",
    "schema_versions",
    "serialize",
    "validate",
    "version_of_schema_id",
    "write_container",
]

EXTRA: Final = RUBIN

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
