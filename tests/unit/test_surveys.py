"""Survey adapters, routing and feature assembly by name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.resources import schemas_dir
from service.exceptions import InputError, SettingsError
from service.surveys import Alert, FeatureAssembler, get_survey, route


def sample(survey: str) -> dict[str, object]:
    directory = schemas_dir() / get_survey(survey).schema_path.parent / "samples"
    loaded: dict[str, object] = json.loads(sorted(directory.glob("*.json"))[0].read_text())
    return loaded


def test_ztf_and_lsst_records_parse_with_their_id_field() -> None:
    ztf = get_survey("ztf").parse(sample("ztf"))
    assert ztf.oid.startswith("ZTF")
    lsst = get_survey("lsst").parse(sample("lsst"))
    assert lsst.oid == "1250148870144671744"
    assert lsst.features["g_psfFluxMean"] == 18234.5
    assert set(lsst.top_probabilities) == {"Transient", "Stochastic", "Periodic"}


def test_unknown_survey() -> None:
    with pytest.raises(SettingsError, match="unknown survey 'tess'"):
        get_survey("tess")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r.pop("oid"), "invalid_record"),
        (lambda r: r.update(oid=""), "invalid_record"),
        (lambda r: r.update(features="many"), "invalid_record"),
        (lambda r: r.pop("lc_classification"), "missing_probabilities"),
        (lambda r: r["lc_classification"]["hierarchical"].pop("top"), "missing_probabilities"),
    ],
)
def test_bad_records(change: object, reason: str) -> None:
    record = sample("ztf")
    change(record)  # type: ignore[operator]
    with pytest.raises(InputError) as info:
        get_survey("ztf").parse(record)
    assert info.value.reason == reason


def test_null_features_map_is_all_undefined() -> None:
    record = sample("ztf")
    record["features"] = None
    assert get_survey("ztf").parse(record).features == {}


def test_route_picks_the_most_probable_class() -> None:
    alert = Alert("x", {}, {"Transient": 0.2, "Stochastic": 0.5, "Periodic": 0.3})
    assert route(alert.top_probabilities) == ("Stochastic", 0.5)
    with pytest.raises(InputError, match="probability of 'Periodic' is nan"):
        route({"Transient": 0.2, "Periodic": float("nan")})


def test_features_are_matched_by_name() -> None:
    assembler = FeatureAssembler(("a", "b", "c", "d"))
    row = assembler.row({"d": 4, "a": 1.5, "c": None, "unknown": 9.0, "b": True})
    np.testing.assert_array_equal(row, np.float32([1.5, 1.0, np.nan, 4.0]))
    assert row.dtype == np.float32
    with pytest.raises(InputError, match="'b' is inf") as info:
        assembler.row({"b": float("inf")})
    assert info.value.reason == "non_finite_feature"
    with pytest.raises(InputError, match="'a' is not a number"):
        assembler.row({"a": "bright"})
