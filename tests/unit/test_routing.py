"""Routing (service.core.routing) through the processor: every stored ALeRCE version scores
with full feature coverage, foreign or incomplete records are dead letters with the reason, and
coverage is measured, counted and reported."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
import structlog

from models.features import paper_features, ztf_feature_names
from models.resources import sample_dir
from models.scorers import DEFAULT_SCORERS
from models.table import read_table
from service.config import load_settings
from service.core.processing import AlertProcessor
from service.core.routing import REPORT_AFTER
from service.exceptions import InputError, SettingsError
from service.io.sources.files import table_records
from service.records import Input, Lineage, Row
from tests.unit.alerce_records import base_record, encode
from tests.unit.tiny_bundles import write_bundles

PAPER = paper_features()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundles(tmp_path_factory.mktemp("bundles"), "ztf", PAPER)


def processor(bundles: Path, version: str = "3", **model: Any) -> AlertProcessor:
    settings = {
        "input": {"topics": ["t"], "schema_version": version},
        "model": {"bundles_dir": str(bundles), "inference": "inline", **model},
    }
    return AlertProcessor(load_settings(None, settings))


def route(p: AlertProcessor, records: list[dict[str, Any]], version: str = "3") -> list[Any]:
    values: list[bytes | None] = [encode("ztf", version, r) for r in records]
    return p.rows_many(values, [Lineage("t", 0, i, None) for i in range(len(values))])


def reasons(results: list[Any]) -> list[str | None]:
    return [r.reason if isinstance(r, InputError) else None for r in results]


@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_every_alerce_version_scores_with_full_coverage(bundles: Path, version: str) -> None:
    p = processor(bundles, version)
    records = [base_record("ztf", version, top, s) for s in range(3) for top in p.routes]
    for batch in (records[:2], records * 4):  # the generic and the batch path
        results = route(p, batch, version)
        assert reasons(results) == [None] * len(batch)
        for record, [(top, row)] in zip(batch, results, strict=True):
            top_probabilities = record["lc_classification"]["hierarchical"]["top"]
            assert top == max(top_probabilities, key=top_probabilities.get)
            assert row.features.dtype == np.float32
            assert row.features.shape == (len(PAPER),)
            # every feature carried by name; the row's coverage: those with a value (~90%)
            assert row.coverage == np.count_nonzero(~np.isnan(row.features)) / len(PAPER)
            assert 0.8 < row.coverage < 1.0
        by_name = p.router.take_coverage().by_class
        assert {c for seen in by_name.values() for c, _ in seen} == {1.0}


def test_the_2023_names_reach_todays_columns(bundles: Path) -> None:
    p = processor(bundles, "2")
    record = base_record("ztf", "2", "Periodic")
    record["features"]["g-r_max"] = 1.25
    record["features"]["Power_rate_1/2"] = 0.5
    [[(_, row)]] = route(p, [record], "2")
    assert row.features[PAPER.index("g_r_max_12")] == np.float32(1.25)
    assert row.features[PAPER.index("Power_rate_1_2_12")] == np.float32(0.5)


def test_records_named_another_way_are_dead_letters(bundles: Path) -> None:
    p = processor(bundles)
    foreign = base_record("ztf", "3")
    foreign["features"] = {f"Bazin_{k}_1": 1.0 for k in ("A", "B", "t0")} | {"Amplitude_1": 0.3}
    results = route(p, [foreign] * 40)
    assert reasons(results) == ["low_feature_coverage"] * 40
    message = str(results[0])
    assert f"carries 1 of the {len(PAPER)} features" in message
    assert "absent: Amplitude_2" in message
    # a null feature map is not "all features undefined": nothing is carried
    empty = base_record("ztf", "3")
    empty["features"] = None
    assert reasons(route(p, [empty])) == ["low_feature_coverage"]


def test_null_features_are_carried_and_absent_ones_are_not(bundles: Path) -> None:
    p = processor(bundles)
    full = base_record("ztf", "3", "Stochastic", seed=2)
    full["features"] = dict.fromkeys(full["features"], 1.5)
    lacking = base_record("ztf", "3", "Stochastic", seed=1)
    for name in PAPER[:5]:
        del lacking["features"][name]
    halved = base_record("ztf", "3", "Stochastic", seed=3)
    halved["features"] = dict.fromkeys(halved["features"], 2.0) | dict.fromkeys(PAPER[::2])
    results = route(p, [full, lacking, halved])
    assert reasons(results) == [None, None, None]
    [(_, complete)], [(_, partial)], [(_, half)] = results
    assert complete.coverage == 1.0
    assert np.isnan(partial.features[:5]).all()
    assert partial.coverage == np.count_nonzero(~np.isnan(partial.features)) / len(PAPER)
    assert partial.coverage < 1 - 5 / len(PAPER)  # the absent ones, and the nulls
    assert half.coverage == pytest.approx(len(PAPER[1::2]) / len(PAPER))
    # the coverage by name (metrics, the report): nulls are carried, absent names are not
    coverage = p.router.take_coverage()
    assert sorted(coverage.by_class["Stochastic"]) == [(1 - 5 / len(PAPER), 1), (1.0, 2)]
    assert coverage.absent == {("Stochastic", n): 1 for n in PAPER[:5]}
    assert p.router.take_coverage().routed == 0  # taken


def test_records_of_mostly_null_features_are_dead_letters(bundles: Path) -> None:
    p = processor(bundles)
    every = list(ztf_feature_names())
    nulls = base_record("ztf", "3", "Periodic")
    nulls["features"] = dict.fromkeys(every)
    nans = base_record("ztf", "3", "Transient", seed=1)
    nans["features"] = dict.fromkeys(every, float("nan"))
    few = base_record("ztf", "3", "Stochastic", seed=2)
    few["features"] = dict.fromkeys(every) | dict.fromkeys(PAPER[:10], 0.5)  # 10 of 129
    enough = base_record("ztf", "3", "Stochastic", seed=3)  # the least of the ZTF sample: 25%
    enough["features"] = dict.fromkeys(every) | dict.fromkeys(PAPER[:33], 0.5)
    batch = [nulls, nans, few, enough]
    for records in (batch, batch * 10):  # the generic and the batch path
        results = route(p, records)
        assert reasons(results)[:4] == ["null_features"] * 3 + [None]
        assert str(results[0]) == (
            f"0 of the {len(PAPER)} features of model ztf/periodic-{DEFAULT_SCORERS['Periodic']} "
            "have a value, the "
            "others are null (0% < model.min_feature_values 20%)"
        )
        assert str(results[2]).startswith(f"10 of the {len(PAPER)} features")
        [(_, row)] = results[3]
        assert row.coverage == 33 / len(PAPER)
    # the threshold is a setting; 0 scores even an empty record
    assert reasons(route(processor(bundles, min_feature_values=0.3), [enough])) == ["null_features"]
    [[(_, row)]] = route(processor(bundles, min_feature_values=0.0), [nulls])
    assert row.coverage == 0.0
    assert np.isnan(row.features).all()


@pytest.mark.parametrize("survey", ["ztf", "lsst"])
def test_the_default_threshold_keeps_every_alert_of_the_committed_samples(survey: str) -> None:
    settings = {"input": {"format": "container"}, "model": {"survey": survey}}
    p = AlertProcessor(load_settings(None, settings))
    table = read_table(sample_dir().parent / f"{survey}-sim-sample" / "objects.parquet")
    records = list(table_records(table, p.survey.id_fields[0]))
    [rows] = p.route([Input(Lineage("sample", 0, 0, None), None, None, None, records)])
    assert len(rows) == len(table)
    shares = [row.coverage for _, row in rows]
    assert p.router.min_values < min(shares) < 0.6  # the samples have sparse records too


def test_the_coverage_threshold_is_a_setting(bundles: Path) -> None:
    lacking = base_record("ztf", "3", "Periodic")
    for name in PAPER[:20]:
        del lacking["features"][name]
    assert reasons(route(processor(bundles), [lacking])) == ["low_feature_coverage"]
    strict = processor(bundles, min_feature_coverage=0.8)
    assert reasons(route(strict, [lacking])) == [None]


def test_every_dead_letter_reason_of_routing(bundles: Path) -> None:
    p = processor(bundles, scorers={"Periodic": "mcdsvdd", "Transient": "mcdsvdd"})
    good = base_record("ztf", "3", "Periodic")
    nan_top = base_record("ztf", "3", "Periodic", seed=1)
    nan_top["lc_classification"]["hierarchical"]["top"]["Transient"] = float("nan")
    stochastic = base_record("ztf", "3", "Stochastic", seed=2)
    infinite = base_record("ztf", "3", "Periodic", seed=3)
    infinite["features"][PAPER[7]] = float("inf")
    unused_infinite = base_record("ztf", "3", "Periodic", seed=4)
    unused = next(n for n in ztf_feature_names() if n not in PAPER)
    unused_infinite["features"][unused] = float("-inf")
    tie = base_record("ztf", "3", "Periodic", seed=5)
    tie["lc_classification"]["hierarchical"]["top"] = {
        "Stochastic": 0.4,
        "Transient": 0.4,
        "Periodic": 0.2,
    }
    batch = [good, nan_top, stochastic, infinite, unused_infinite, tie]
    for records in (batch, batch * 8):  # generic, then batch path
        results = route(p, records)
        assert reasons(results)[:6] == [
            None,
            "missing_probabilities",
            "unknown_class",
            "non_finite_feature",
            None,
            "unknown_class",  # ties go to the first class in the record: Stochastic
        ]
        assert f"feature {PAPER[7]!r} is inf" in str(results[3])
        assert "probability of 'Transient' is nan" in str(results[1])


def test_a_container_is_scored_whole_or_not_at_all(bundles: Path) -> None:
    settings = {
        "input": {"topics": ["t"], "format": "container"},
        "model": {"bundles_dir": str(bundles), "inference": "inline"},
    }
    p = AlertProcessor(load_settings(None, settings))
    schema = fastavro.parse_schema(json.loads(p.survey.schema_path().read_text()))

    def container(records: list[dict[str, Any]]) -> bytes:
        buffer = io.BytesIO()
        fastavro.writer(buffer, schema, records)
        return buffer.getvalue()

    bad = base_record("ztf", "3", "Periodic", seed=9)
    bad["features"][PAPER[0]] = float("inf")
    two = [base_record("ztf", "3", "Periodic"), base_record("ztf", "3", "Transient", seed=1)]
    results = p.rows_many([container(two), container([*two, bad])], [Lineage("t", 0, 0, None)] * 2)
    assert [top for top, _ in results[0]] == ["Periodic", "Transient"]
    assert reasons(results) == [None, "non_finite_feature"]


def test_a_record_typed_schema_is_checked_at_start(bundles: Path, tmp_path: Path) -> None:
    processor(bundles, "1")  # ALeRCE's version 1 names every paper feature (2023 names)
    schema = json.loads(Path(processor(bundles, "1").survey.schema_path("1")).read_text())
    fields = schema["fields"][1]["type"]["fields"]
    drop = {"Amplitude_1", "Amplitude_2", "g-r_max"}
    few = [f for f in fields if f["name"] not in drop]
    path = tmp_path / "fewer.avsc"
    path.write_text(
        json.dumps(
            {
                **schema,
                "fields": [
                    schema["fields"][0],
                    {**schema["fields"][1], "type": {**schema["fields"][1]["type"], "fields": few}},
                    schema["fields"][2],
                ],
            }
        )
    )
    settings = {
        "input": {"topics": ["t"], "schema_file": str(path)},
        "model": {"bundles_dir": str(bundles), "inference": "inline"},
    }
    with structlog.testing.capture_logs() as logs:
        AlertProcessor(load_settings(None, settings))
    [warning] = [e for e in logs if e["event"] == "input_schema_lacks_features"][:1]
    assert set(warning["absent"]) == {"Amplitude_1", "Amplitude_2", "g_r_max_12"}
    settings["model"]["min_feature_coverage"] = 0.99  # type: ignore[index]
    with pytest.raises(SettingsError, match=r"input schema carries 98% of the features"):
        AlertProcessor(load_settings(None, settings))


def test_coverage_is_reported_once_with_the_absent_names(bundles: Path) -> None:
    p = processor(bundles)
    lacking = base_record("ztf", "3", "Transient")
    del lacking["features"]["SPM_A_1"]
    with structlog.testing.capture_logs() as logs:
        for _ in range(REPORT_AFTER // 100 + 1):
            route(p, [lacking] * 100)
    [report] = [e for e in logs if e["event"] == "feature_coverage"]
    assert report["log_level"] == "warning"
    transient = report["by_class"]["Transient"]
    assert transient["absent"] == {"SPM_A_1": transient["alerts"]}
    assert transient["alerts"] >= REPORT_AFTER


def test_rows_are_rows_of_the_routed_model(bundles: Path) -> None:
    p = processor(bundles)
    [[(top, row)]] = route(p, [base_record("ztf", "3", "Transient")])
    assert isinstance(row, Row)
    assert top == "Transient"
    assert row.top_probability == pytest.approx(0.8)
    assert p.routes[top].feature_names == PAPER
