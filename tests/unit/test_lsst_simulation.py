"""The LSST simulator: Rubin-like observing, alert packets valid against Rubin's latest schema,
the table's features equal to what the service computes from the packets' bytes, light curves
on disk that rebuild the same packets, and the committed sample."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lsst.alert.packet")

from models import rubin
from models.resources import bundles_dir
from models.simulate.dataset import SimulationConfig
from models.simulate.lsst import (
    BANDS,
    DEPTH,
    LsstLightCurve,
    dia_object_id,
    lsst_epochs,
    mag_to_njy,
)
from models.simulate.lsst_dataset import (
    read_lsst_lightcurves,
    simulate_lsst,
    simulate_object,
    simulate_packets,
    write_lsst_lightcurves,
)
from models.simulate.lsst_packets import alert_packet, diaobject_summaries
from models.table import read_table
from models.taxonomy import ALL_SUBCLASSES, SUBCLASSES

SAMPLE = Path(__file__).resolve().parents[2] / "models" / "data" / "lsst-sim-sample"


def test_rubin_like_observing() -> None:
    assert mag_to_njy(31.4) == pytest.approx(1.0)  # AB 31.4 = 1 nJy
    epochs = lsst_epochs(np.random.default_rng(0), 61000.0, 3650.0)
    assert np.all(np.diff(epochs.mjd) >= 0)
    counts = np.bincount(epochs.band, minlength=6)
    assert counts.sum() > 400  # ~80-90 visits a year over ten years
    assert counts[2] > counts[0]  # r (184 of 825 WFD visits) far more often than u (56)
    for b, band in enumerate(BANDS):
        assert np.median(epochs.mag_lim[epochs.band == b]) == pytest.approx(DEPTH[band], abs=0.1)


@pytest.mark.parametrize(
    ("subclass", "index"), [(s, i) for i, s in enumerate(sum(SUBCLASSES.values(), ()))]
)
def test_packets_are_valid_rubin_alerts_whose_features_are_the_tables(
    subclass: str, index: int
) -> None:
    obj = simulate_object(subclass, 11, index, lightcurve=True)
    again = simulate_object(subclass, 11, index, lightcurve=True)
    np.testing.assert_array_equal(obj.features, again.features)  # deterministic
    packet = alert_packet(obj.curve, int(obj.oid), obj.ra, obj.dec)
    rubin.validate(packet)  # against the latest schema of lsst-alert-packet
    entry, decoded = rubin.parse_confluent(rubin.confluent_bytes(packet))
    assert entry.version == rubin.latest_version()
    assert entry.schema_id == rubin.get_version(entry.version).schema_id
    assert decoded["diaObject"]["diaObjectId"] == int(obj.oid)
    assert decoded["diaSource"]["band"] in BANDS
    assert -70 < decoded["diaObject"]["dec"] < 12.5  # Rubin's footprint
    # the service's path: bytes -> record -> models.rubin features, equal to the table row
    service = rubin.diaobject_features(decoded) | rubin.lightcurve_features(decoded)
    names = rubin.diaobject_fields() + rubin.lightcurve_feature_names()
    row = np.array([np.nan if service[n] is None else service[n] for n in names])
    np.testing.assert_array_equal(row, obj.features)
    assert packet["diaObject"]["nDiaSources"] == int(obj.curve.detected.sum())
    history = rubin.photometry(decoded)
    assert history.detected.sum() >= 1
    assert np.all(decoded["diaSource"]["midpointMjdTai"] - history.mjd <= 365.0 + 1e-9)


def test_diaobject_summaries_follow_ap_association() -> None:
    curve = LsstLightCurve(
        mjd=np.array([1.0, 2.0, 4.0, 5.0]),
        band=np.array([2, 2, 2, 1], dtype=np.int8),
        diff=np.array([100.0, 300.0, 200.0, 50.0]),
        diff_err=np.array([10.0, 20.0, 10.0, 5.0]),
        science=np.array([1100.0, 1300.0, 1200.0, 900.0]),
        science_err=np.array([10.0, 20.0, 10.0, 5.0]),
        detected=np.array([True, True, True, False]),
    )
    out = diaobject_summaries(curve, rubin.diaobject_fields())
    weights = np.array([1 / 100, 1 / 400, 1 / 100])
    mean = np.sum(np.array([100, 300, 200]) * weights) / weights.sum()
    assert out["r_psfFluxMean"] == pytest.approx(mean)
    assert out["r_psfFluxMeanErr"] == pytest.approx(np.sqrt(1 / weights.sum()))
    assert out["r_psfFluxSigma"] == pytest.approx(np.std([100, 300, 200], ddof=1))
    assert out["r_psfFluxNdata"] == 3
    assert out["r_psfFluxMin"] == 100.0
    assert out["r_psfFluxMax"] == 300.0
    assert out["r_psfFluxMaxSlope"] == pytest.approx(200.0)  # (300 - 100) / (2 - 1)
    assert out["r_psfFluxErrMean"] == pytest.approx(40.0 / 3)
    assert out["g_psfFluxNdata"] == 0  # the g point is forced photometry only
    assert out["g_psfFluxMean"] is None
    assert out["g_fpFluxMean"] == pytest.approx(50.0)
    assert "r_psfFluxChi2" not in out  # not a field of the latest schema


def test_dataset_light_curves_round_trip_to_the_same_packets(tmp_path: Path) -> None:
    config = SimulationConfig(n_objects=45, seed=4, folds=2, jobs=1, keep_lightcurves=True,
                              progress=False)  # fmt: skip
    dataset = simulate_lsst(config)
    table = dataset.table
    assert table.metadata["survey"] == "lsst"
    assert table.metadata["schema_version"] == rubin.latest_version()
    assert table.feature_names[: len(rubin.diaobject_fields())] == rubin.diaobject_fields()
    assert {"ra", "dec"} <= table.truth.keys()
    path = tmp_path / "lc.parquet"
    write_lsst_lightcurves(dataset.curves, dataset.positions, path)
    curves, positions = read_lsst_lightcurves(path)
    assert list(curves) == list(dataset.curves)
    rebuilt = dataclasses.replace(dataset, curves=curves, positions=positions)
    for a, b in zip(dataset.packets(), rebuilt.packets(), strict=True):
        fa = rubin.diaobject_features(a)
        fb = rubin.diaobject_features(b)
        assert fa.keys() == fb.keys()
        for key, value in fa.items():  # light curves are stored as float32
            assert (value is None) == (fb[key] is None)
            if value is not None:
                assert fb[key] == pytest.approx(value, rel=1e-5, abs=1e-3)
    labeled = simulate_packets(6, 4)
    raw = [packet for _, packet in labeled]
    assert [p["diaObject"]["diaObjectId"] for p in raw] == [dia_object_id(4, i) for i in range(6)]
    assert labeled == simulate_packets(6, 4)
    assert {subclass for subclass, _ in labeled} <= set(ALL_SUBCLASSES)
    for packet in raw:
        rubin.validate(packet)


def test_the_committed_sample() -> None:
    table = read_table(SAMPLE / "objects.parquet")
    assert len(table) == 2000
    assert table.metadata["survey"] == "lsst"
    assert table.metadata["seed"] == 20261129
    assert set(rubin.common_diaobject_fields()) <= set(table.feature_names)
    assert set(table.subclass.tolist()) == set(sum(SUBCLASSES.values(), ()))
    assert len(set(table.oid.tolist())) == 2000
    # the shipped LSST bundles use features the sample (and every schema version) carries
    for manifest in sorted((bundles_dir() / "lsst").glob("*/manifest.json")):
        names = json.loads(manifest.read_text())["feature_names"]
        assert names == list(rubin.common_diaobject_fields()), manifest
    card = (SAMPLE / "DATACARD.md").read_text()
    assert "SIMULATED" in card or "simulated" in card
