"""What offline commands conclude with (service.commands.offline): dead letters by reason with
the first of each, the other survey's hint from the input's feature names (tables, CSV, Avro
containers of classifier records or Rubin alert packets), and the error when nothing was scored."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pytest

from models import rubin
from models.records import input_records
from models.resources import sample_dir
from models.table import read_table
from service.commands.offline import NothingScoredError, conclude, dead_letter_lines, survey_hint
from service.config import Settings, load_settings
from service.io.codecs.surveys import get_survey
from service.pipeline import Summary

ZTF = sample_dir() / "objects.parquet"
LSST = sample_dir().parent / "lsst-sim-sample" / "objects.parquet"


def settings(survey: str) -> Settings:
    return load_settings(None, {"model": {"survey": survey}})


def test_dead_letters_are_counted_by_reason_with_the_first_of_each() -> None:
    summary = Summary(
        10,
        7,
        3,
        1.0,
        {"null_features": 1, "non_finite_feature": 2},
        {
            "null_features": ("file:t.parquet", 0, 4, "0 of the 129 features ..."),
            "non_finite_feature": ("alerts", 3, 17, "feature 'x' is inf"),
        },
    )
    assert dead_letter_lines(summary, "t.dead-letters.parquet") == [
        "dead-lettered 3 of 10 by reason (every one: t.dead-letters.parquet):",
        "  non_finite_feature        2  first: alerts[3] offset 17: feature 'x' is inf",
        "  null_features             1  first: file:t.parquet offset 4: 0 of the 129 features ...",
    ]
    assert dead_letter_lines(Summary(5, 5, 0, 1.0), "x") == []


def test_nothing_scored_is_an_error_after_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    summary = Summary(2, 0, 2, 1.0, {"undecodable": 2}, {"undecodable": ("t", 0, 0, "bad")})
    with pytest.raises(NothingScoredError, match=r"^nothing scored: all 2 inputs were dead-"):
        conclude(summary, "out.parquet", settings("ztf"))
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("read 2, scored 0, dead-lettered 2 in ")
    conclude(Summary(2, 1, 1, 1.0, {"undecodable": 1}, {}), "out.parquet", settings("ztf"))


@pytest.mark.parametrize(("data", "wrong", "right"), [(LSST, "ztf", "lsst"), (ZTF, "lsst", "ztf")])
def test_a_table_of_the_other_survey_gets_a_hint(
    data: Path, wrong: str, right: str, tmp_path: Path
) -> None:
    hint = survey_hint(settings(wrong), [data])
    assert hint is not None
    assert hint.startswith(f"the input's features are those of the {right} models (100%")
    assert hint.endswith(f"0% of {wrong}'s): add --survey {right}")
    assert survey_hint(settings(right), [data]) is None
    csv = tmp_path / "objects.csv"
    table = read_table(data)
    csv.write_text(",".join(("oid", *table.feature_names)) + "\n")
    assert survey_hint(settings(wrong), [csv]) == hint
    assert survey_hint(settings(wrong), [tmp_path]) == hint  # a directory: its first table


def test_avro_files_of_the_other_survey_get_a_hint(tmp_path: Path) -> None:
    packets = tmp_path / "packets.avro"
    version = rubin.latest_version()
    with open(packets, "wb") as fh:
        fastavro.writer(fh, rubin.alert_schema(version), rubin.sample_alerts(version))
    assert (survey_hint(settings("ztf"), [packets]) or "").endswith("add --survey lsst")
    records = tmp_path / "records.avro"
    buffer = io.BytesIO()
    first = list(input_records(read_table(ZTF).take(np.arange(2))))
    fastavro.writer(buffer, get_survey("ztf").schema(), first)
    records.write_bytes(buffer.getvalue())
    assert (survey_hint(settings("lsst"), [records]) or "").endswith("add --survey ztf")
    assert survey_hint(settings("ztf"), [records]) is None
    garbage = tmp_path / "garbage.avro"
    garbage.write_bytes(b"not avro at all")
    assert survey_hint(settings("ztf"), [garbage]) is None  # no hint, no failure
