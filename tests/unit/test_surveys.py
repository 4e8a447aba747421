"""Survey adapters: record versions, object ids, features and top-level probabilities."""

from __future__ import annotations

from typing import Any

import pytest

from service.exceptions import InputError, SettingsError
from service.io.codecs.surveys import SURVEYS, get_survey
from tests.unit.alerce_records import base_record


@pytest.mark.parametrize(("version", "id_field"), [("1", "aid"), ("2", "aid"), ("3", "oid")])
def test_every_ztf_version_parses_with_its_id_field(version: str, id_field: str) -> None:
    record = base_record("ztf", version, "Transient")
    alert = get_survey("ztf").parse(record)
    assert alert.oid == record[id_field]
    assert dict(alert.top_probabilities) == {"Transient": 0.8, "Stochastic": 0.1, "Periodic": 0.1}
    assert alert.features is record["features"]


def test_lsst_ids_are_longs() -> None:
    alert = get_survey("lsst").parse(base_record("lsst", "1.0", seed=3))
    assert alert.oid == str(10**15 + 3)


def test_the_current_ztf_version_is_alerces_current_record() -> None:
    ztf = get_survey("ztf")
    assert ztf.current == "3"
    assert [f["name"] for f in ztf.schema()["fields"]] == ["oid", "features", "lc_classification"]
    with pytest.raises(SettingsError, match=r"ztf has no record version '4' \(known: 1, 2, 3\)"):
        ztf.schema_path("4")
    assert set(SURVEYS) == {"ztf", "lsst"}


def test_unknown_survey() -> None:
    with pytest.raises(SettingsError, match="unknown survey 'tess'"):
        get_survey("tess")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.pop("oid"), "invalid_record"),
        (lambda r: r.update(oid=""), "invalid_record"),
        (lambda r: r.update(oid=True), "invalid_record"),
        (lambda r: r.update(features="many"), "invalid_record"),
        (lambda r: r.pop("lc_classification"), "missing_probabilities"),
        (lambda r: r["lc_classification"]["hierarchical"].pop("top"), "missing_probabilities"),
        (lambda r: r["lc_classification"]["hierarchical"].update(top={}), "missing_probabilities"),
    ],
)
def test_bad_records(change: Any, reason: str) -> None:
    record = base_record("ztf", "3")
    change(record)
    with pytest.raises(InputError) as info:
        get_survey("ztf").parse(record)
    assert info.value.reason == reason


def test_a_null_feature_map_carries_no_feature() -> None:
    record = base_record("ztf", "3")
    record["features"] = None
    assert get_survey("ztf").parse(record).features == {}
