"""Rubin alert packets as the service's input: every schema version lsst-alert-packet ships
decodes from its sample alerts - in Rubin's Confluent wire format (the schema id names the
version), unframed with a configured version and as Avro files - and goes to the unrouted model
with the diaObject's features; packets that cannot be scored are dead letters with a reason."""

from __future__ import annotations

import copy
import io
import struct
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest

from models import rubin
from models.resources import bundle_dirname
from models.taxonomy import UNROUTED
from service.config import load_settings
from service.core.processing import AlertProcessor
from service.exceptions import InputError
from service.records import Lineage, Row
from tests.unit.tiny_bundles import tiny_bundle

VERSIONS = [v.version for v in rubin.schema_versions()]
DIAOBJECT = rubin.common_diaobject_fields()


def processor(
    root: Path, names: tuple[str, ...] = DIAOBJECT, **input_settings: Any
) -> AlertProcessor:
    path = root / bundle_dirname("lsst", UNROUTED, "ae")
    if not path.exists():
        tiny_bundle("lsst", UNROUTED, "ae", names).save(path)
    overrides = {
        "input": {"format": "confluent", **input_settings},
        "model": {
            "survey": "lsst",
            "bundles_dir": root,
            "scorers": {UNROUTED: "ae"},
            # the package's sample alerts have null flux summaries (null_features otherwise)
            "min_feature_values": 0.0,
        },
    }
    return AlertProcessor(load_settings(None, overrides))


def valued(features: np.ndarray[Any, Any]) -> float:
    """The share of features with a value: a row's coverage."""
    return float(np.count_nonzero(~np.isnan(features)) / features.size)


def rows_of(p: AlertProcessor, values: list[bytes]) -> list[list[tuple[str, Row]] | InputError]:
    return p.rows_many(values, [Lineage("rubin-alerts", 0, i, None) for i in range(len(values))])


def test_the_package_ships_many_versions_with_rubins_ids() -> None:
    assert len(VERSIONS) >= 15
    assert "7.1" in VERSIONS
    assert rubin.latest_version() in VERSIONS
    ids = {v.version: v.schema_id for v in rubin.schema_versions()}
    assert ids["7.1"] == 701
    assert ids["11.1"] == 1101
    assert ids["3.0"] == 300


@pytest.mark.parametrize("version", VERSIONS)
def test_every_versions_sample_alerts_decode_in_rubins_wire_format(
    version: str, tmp_path: Path
) -> None:
    alerts = rubin.sample_alerts(version)
    values = [rubin.confluent_bytes(a, version) for a in alerts] * 3  # batches of 4+ too
    results = rows_of(processor(tmp_path), values)
    for alert, result in zip(alerts * 3, results, strict=True):
        assert not isinstance(result, InputError), result
        [(top, row)] = result
        assert top == UNROUTED
        assert row.top_probability == 1.0
        assert row.oid == str(alert["diaObject"]["diaObjectId"])
        expected = rubin.diaobject_features(alert)
        want = np.array([np.nan if expected[n] is None else expected[n] for n in DIAOBJECT])
        np.testing.assert_array_equal(row.features, want.astype(np.float32))
        assert row.coverage == valued(want)


@pytest.mark.parametrize("version", [VERSIONS[0], "7.1", VERSIONS[-1]])
def test_unframed_packets_and_avro_files_decode_too(version: str, tmp_path: Path) -> None:
    alert = rubin.sample_alerts(version)[0]
    unframed = processor(tmp_path, format="schemaless", schema_version=version)
    [[(_, row)]] = rows_of(unframed, [rubin.serialize(alert, version)])
    buffer = io.BytesIO()
    fastavro.writer(buffer, rubin.alert_schema(version), [alert])
    container = processor(tmp_path, format="container")
    [[(_, from_file)]] = rows_of(container, [buffer.getvalue()])
    assert row.oid == from_file.oid == str(alert["diaObject"]["diaObjectId"])
    np.testing.assert_array_equal(row.features, from_file.features)


def test_the_schema_id_chooses_the_version(tmp_path: Path) -> None:
    p = processor(tmp_path)
    old, new = rubin.sample_alerts("7.1")[0], rubin.sample_alerts(VERSIONS[-1])[0]
    right = rubin.confluent_bytes(new, VERSIONS[-1])
    # the latest payload announced as 7.1: the bytes do not fit the 7.1 schema
    wrong = rubin.confluent_frame(rubin.serialize(new, VERSIONS[-1]), 701)
    unknown = rubin.confluent_frame(rubin.serialize(old, "7.1"), 9999)
    unframed = rubin.serialize(old, "7.1")
    results = rows_of(p, [right, rubin.confluent_bytes(old, "7.1"), wrong, unknown, unframed])
    assert not isinstance(results[0], InputError)
    assert not isinstance(results[1], InputError)
    assert isinstance(results[2], InputError)
    assert results[2].reason in (
        "undecodable",
        "invalid_record",
    )
    assert isinstance(results[3], InputError)
    assert results[3].reason == "unknown_schema"
    assert isinstance(results[4], InputError)
    assert results[4].reason in (
        "undecodable",
        "unknown_schema",
    )


def test_packets_that_cannot_be_scored_are_dead_letters(tmp_path: Path) -> None:
    version = VERSIONS[-1]
    alert = rubin.sample_alerts(version)[0]
    solar_system = copy.deepcopy(alert)
    solar_system["diaObject"] = None
    results = rows_of(processor(tmp_path), [rubin.confluent_bytes(solar_system, version)])
    assert isinstance(results[0], InputError)
    assert results[0].reason == "no_object"

    routed_only = tmp_path / "routed"
    tiny_bundle("lsst", "Periodic", "ae", DIAOBJECT).save(
        routed_only / bundle_dirname("lsst", "Periodic", "ae")
    )
    overrides = {
        "input": {"format": "confluent"},
        "model": {"survey": "lsst", "bundles_dir": routed_only, "scorers": {"Periodic": "ae"}},
    }
    p = AlertProcessor(load_settings(None, overrides))
    [result] = rows_of(p, [rubin.confluent_bytes(alert, version)])
    assert isinstance(result, InputError)
    assert result.reason == "missing_probabilities"
    assert "no unrouted model (All)" in str(result)


def test_a_model_of_other_features_sees_low_coverage(tmp_path: Path) -> None:
    p = processor(tmp_path, names=tuple(f"{n}_2026" for n in DIAOBJECT))
    alert = rubin.sample_alerts(VERSIONS[-1])[0]
    [result] = rows_of(p, [rubin.confluent_bytes(alert, VERSIONS[-1])])
    assert isinstance(result, InputError)
    assert result.reason == "low_feature_coverage"


def test_light_curve_features_are_computed_when_a_model_uses_them(tmp_path: Path) -> None:
    version = VERSIONS[-1]
    alert = rubin.sample_alerts(version)[0]
    lightcurve = rubin.lightcurve_features(alert)
    assert sum(v is not None for v in lightcurve.values()) >= 10  # the sample has a history
    names = DIAOBJECT + tuple(lightcurve)
    p = processor(tmp_path, names=names)
    [[(_, row)]] = rows_of(p, [rubin.confluent_bytes(alert, version)])
    assert row.coverage == valued(row.features)
    expected = rubin.diaobject_features(alert) | lightcurve
    want = np.array([np.nan if expected[n] is None else expected[n] for n in names])
    np.testing.assert_array_equal(row.features, want.astype(np.float32))


def test_confluent_framing_is_rubins() -> None:
    alert = rubin.sample_alerts("7.1")[0]
    framed = rubin.confluent_bytes(alert, "7.1")
    assert framed[:5] == struct.pack(">bI", 0, 701)
    assert fastavro.schemaless_reader(io.BytesIO(framed[5:]), rubin.alert_schema("7.1"), None)


def test_the_defaults_score_rubin_packets_with_the_shipped_lsst_bundles() -> None:
    """model.survey = "lsst" alone: the shipped unrouted Isolation Forest scores packets of every
    version, and the routed models stay for records that carry probabilities."""
    settings = load_settings(None, {"model": {"survey": "lsst"}})
    assert settings.input.format == "confluent"  # Rubin's stream
    chosen = load_settings(None, {"model": {"survey": "lsst"}, "input": {"schema_version": "1.0"}})
    assert chosen.input.format == "schemaless"  # a record version chosen: unframed records
    assert settings.model.scorers == {
        "Transient": "mcdsvdd",
        "Stochastic": "ae",
        "Periodic": "mcdsvdd",
        UNROUTED: "iforest",
    }
    assert load_settings(None, {}).model.scorers == {  # ZTF: no unrouted model, the lite ensemble
        "Transient": "mcdsvdd-ens-lite",
        "Stochastic": "mcdsvdd-ens-lite",
        "Periodic": "mcdsvdd-ens-lite",
    }
    alerts = [(rubin.sample_alerts(v)[0], v) for v in VERSIONS]
    values = [rubin.confluent_bytes(a, v) for a, v in alerts]
    # the package's sample alerts carry every feature by name, but (nearly) all null: they
    # are dead letters by default, scored when null_features is turned off
    for result in rows_of(AlertProcessor(settings), values):
        assert isinstance(result, InputError)
        assert result.reason == "null_features"
    everything = {"model": {"survey": "lsst", "min_feature_values": 0.0}}
    for result in rows_of(AlertProcessor(load_settings(None, everything)), values):
        assert not isinstance(result, InputError), result
        [(top, row)] = result
        assert top == UNROUTED
        assert row.coverage == valued(row.features)


@pytest.mark.parametrize("version", [VERSIONS[0], VERSIONS[-1]])
def test_without_light_curve_features_the_history_is_skipped(version: str) -> None:
    from service.io.codecs.surveys import PACKET_FIELDS, get_survey

    lsst = get_survey("lsst")
    schema = fastavro.parse_schema(rubin.alert_schema(version))
    reader = lsst.projection(lightcurves=False)(schema)
    assert {f["name"] for f in reader["fields"]} == PACKET_FIELDS & {
        f["name"] for f in schema["fields"]
    }
    assert lsst.projection(lightcurves=True)(schema) is None  # the history is needed then
    assert get_survey("ztf").projection(lightcurves=False)(schema) is None
    (alert,) = rubin.sample_alerts(version)
    value = rubin.serialize(alert, version)
    skipped = fastavro.schemaless_reader(io.BytesIO(value), schema, reader)
    assert "prvDiaSources" not in skipped
    assert rubin.diaobject_features(skipped) == rubin.diaobject_features(alert)
