"""models.rubin: Rubin's schema versions, ids and sample alerts from lsst-alert-packet, the
diaObject and light-curve features of a packet, and the wire formats."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lsst.alert.packet")

from models import rubin
from models.exceptions import DataError

VERSIONS = [v.version for v in rubin.schema_versions()]


def test_versions_and_ids_come_from_the_package() -> None:
    import lsst.alert.packet as packet

    root = Path(str(packet.get_schema_root()))
    on_disk = sorted(
        f"{p.parent.parent.name}.{p.parent.name}" for p in root.glob("*/*/lsst.v*_*.alert.avsc")
    )
    assert sorted(VERSIONS) == on_disk
    assert len(VERSIONS) >= 15  # 3.0 ... 11.1 in 30.2026.2700
    assert rubin.latest_version() == (root / "latest.txt").read_text().strip()
    for entry in rubin.schema_versions():
        major, minor = (int(x) for x in entry.version.split("."))
        assert entry.schema_id == major * 100 + minor  # Rubin's registry numbering
        assert rubin.version_of_schema_id(entry.schema_id) == entry
    assert rubin.get_version("7.1").schema_id == 701
    assert rubin.get_version("11.1").schema_id == 1101


def test_unknown_schema_id_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unknown Rubin alert schema id 999"):
        rubin.version_of_schema_id(999)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_sample_alert_decodes_and_yields_diaobject_features(version: str) -> None:
    (alert,) = rubin.sample_alerts(version)
    features = rubin.diaobject_features(alert)
    fields = rubin.diaobject_fields(version)
    assert features.keys() == set(fields)
    assert set(rubin.common_diaobject_fields()) <= features.keys()
    assert all(v is None or np.isfinite(v) for v in features.values())
    # the sparse alert.json with the version gives the same names and the values it holds
    sparse = rubin.sample_alert_json(version)
    from_json = rubin.diaobject_features(sparse, version)
    assert from_json.keys() == features.keys()
    obj = sparse.get("diaObject") or {}
    for name, value in obj.items():
        canonical = rubin.canonical_diaobject_name(name)
        if canonical in from_json and value is not None:
            assert from_json[canonical] == pytest.approx(float(value))
    lc = rubin.lightcurve_features(alert)
    assert lc.keys() == set(rubin.lightcurve_feature_names())
    # every sample packet round-trips through Rubin's wire format
    entry, decoded = rubin.parse_confluent(rubin.confluent_bytes(alert, version))
    assert entry.version == version
    assert decoded == alert


def test_diaobject_field_names_follow_the_schema() -> None:
    latest = rubin.diaobject_fields()
    assert "r_psfFluxMean" in latest
    assert "r_psfFluxSigma" in latest
    assert all(re.match(r"^[ugrizy]_\w+$", n) for n in latest)
    assert len(latest) == len(set(latest))
    # 3.0's rPSFluxMean is read under today's name; nothing is invented
    assert rubin.canonical_diaobject_name("rPSFluxMean") == "r_psfFluxMean"
    assert rubin.canonical_diaobject_name("gFPFluxSigma") == "g_fpFluxSigma"
    assert "r_psfFluxChi2" in rubin.diaobject_fields("3.0")
    assert "r_psfFluxChi2" in rubin.diaobject_fields("7.4")
    assert "r_psfFluxChi2" not in rubin.diaobject_fields("8.0")
    assert set(rubin.common_diaobject_fields()) == {
        f"{b}_{f}"
        for b in rubin.BANDS
        for f in (
            "psfFluxMean",
            "psfFluxMeanErr",
            "psfFluxSigma",
            "psfFluxNdata",
            "fpFluxMean",
            "fpFluxMeanErr",
        )
    }
    with open(rubin.get_version("11.1").directory / "lsst.v11_1.diaObject.avsc") as fh:
        schema_names = {f["name"] for f in json.load(fh)["fields"]}
    assert set(latest) <= schema_names


def test_values_are_taken_as_given() -> None:
    alert = {"diaObject": {"r_psfFluxMean": 12.5, "g_psfFluxSigma": None, "ra": 3.0}}
    assert rubin.diaobject_features(alert) == {"r_psfFluxMean": 12.5, "g_psfFluxSigma": None}
    assert rubin.diaobject_features({"diaObject": None}) == {}
    nan = rubin.diaobject_features({"diaObject": {"r_psfFluxMean": float("nan")}})
    assert nan == {"r_psfFluxMean": None}


def _source(mjd: float, band: str, flux: float, err: float = 10.0) -> dict[str, object]:
    return {"midpointMjdTai": mjd, "band": band, "psfFlux": flux, "psfFluxErr": err}


def test_lightcurve_features_match_light_curve_on_the_same_points() -> None:
    import light_curve as lc

    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(60000, 60300, 30))
    f = rng.normal(1000, 200, 30)
    alert = {
        "diaSource": _source(t[-1], "r", f[-1]),
        "prvDiaSources": [_source(a, "r", b) for a, b in zip(t[:20], f[:20], strict=True)],
        "prvDiaForcedSources": [_source(a, "r", b) for a, b in zip(t[20:-1], f[20:-1], strict=True)]
        + [_source(t[0], "r", -5.0)],  # forced photometry of a detected epoch: not counted twice
    }
    features = rubin.lightcurve_features(alert)
    assert features["lc_r_skew"] == pytest.approx(float(lc.Skew()(t, f, np.full(30, 10.0))[0]))
    assert features["lc_r_stetson_K"] == pytest.approx(
        float(lc.StetsonK()(t, f, np.full(30, 10.0))[0])
    )
    assert features["lc_g_skew"] is None  # no g points
    assert rubin.photometry(alert).detected.sum() == 21


def test_validate_names_the_problem() -> None:
    (alert,) = rubin.sample_alerts(rubin.latest_version())
    rubin.validate(alert)
    with pytest.raises(DataError, match="invalid Rubin alert packet"):
        rubin.validate({**alert, "diaSourceId": "not a long"})


@pytest.mark.parametrize("version", VERSIONS)
def test_every_sample_alert_is_scored_by_the_shipped_lsst_bundles(version: str) -> None:
    from models.bundle import load_bundle
    from models.resources import bundles_dir
    from models.scoring import Scorer

    (alert,) = rubin.sample_alerts(version)
    features = rubin.diaobject_features(alert)
    for path in sorted((bundles_dir() / "lsst").iterdir()):
        if path.name == "all-distclassipy":
            pytest.importorskip("distclassipy")
        bundle = load_bundle(path)
        assert set(bundle.feature_names) <= features.keys()  # coverage 1.0 in every version
        row = [np.nan if features[n] is None else features[n] for n in bundle.feature_names]
        scores = Scorer(bundle, "cpu").score(np.array([row], dtype=np.float32))
        assert np.isfinite(scores.raw).all(), path.name


def test_feature_sets_match_the_train_command() -> None:
    from service.commands.train import LSST_FEATURE_SETS

    assert LSST_FEATURE_SETS == rubin.FEATURE_SETS
    assert rubin.feature_set() == rubin.common_diaobject_fields()
    assert rubin.feature_set("diaobject-latest") == rubin.diaobject_fields()
    assert rubin.feature_set("diaobject+lightcurve")[-1].startswith("lc_y_")
