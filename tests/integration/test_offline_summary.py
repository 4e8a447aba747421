"""The offline commands (`score`, `replay --files --out`, `top`) as a user runs them: dead letters
summarised by reason with the first of each (every one in the dead-letter output, none in the
log), exit status 2 in one line when nothing was scored, a hint when the input is the other
survey's, and `top --scores` alone lists the scores."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.table import read_table, write_table
from service.io.sinks.files import read_dead_letters
from tests.integration.conftest import CLI

ZTF = sample_dir() / "objects.parquet"
LSST = sample_dir().parent / "lsst-sim-sample" / "objects.parquet"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--no-progress"], capture_output=True, text=True, timeout=600
    )


def log_events(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def one_error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The error line: the only stderr line that is not a JSON log event, and the last."""
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert len(plain) == 1, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == plain[0]
    assert plain[0].startswith(f"alert-anomaly {command}: error: ")
    return plain[0]


@pytest.mark.parametrize(("data", "survey", "other"), [(LSST, "ztf", "lsst"), (ZTF, "lsst", "ztf")])
def test_scoring_the_other_surveys_table_fails_in_one_line_with_a_hint(
    tmp_path: Path, data: Path, survey: str, other: str
) -> None:
    n = len(read_table(data))
    out = tmp_path / "scores.parquet"
    result = cli("score", "--survey", survey, str(data), str(out))
    assert result.returncode == 2
    error = one_error_line(result, "score")
    assert f"nothing scored: all {n} inputs were dead-lettered (low_feature_coverage)" in error
    assert error.endswith(f"add --survey {other}")
    # stdout: a few lines, not one per dead letter
    lines = result.stdout.splitlines()
    assert len(lines) == 4, result.stdout
    assert lines[0] == (
        f"dead-lettered {n} of {n} by reason (every one: "
        f"{tmp_path / 'scores.dead-letters.parquet'}):"
    )
    assert lines[1].split()[:2] == ["low_feature_coverage", str(n)]
    assert f"first: file:{data} offset 0: the record carries 0 of the" in lines[1]
    assert lines[2].startswith(f"hint: the input's features are those of the {other} models")
    assert lines[3].startswith(f"read {n}, scored 0, dead-lettered {n} in ")
    # the log does not repeat them; the dead-letter file has every one, OUTPUT is not written
    assert not [e for e in log_events(result.stderr) if e.get("event") == "dead_letter"]
    dead = pq.read_table(tmp_path / "scores.dead-letters.parquet").to_pylist()
    assert [d["source_offset"] for d in dead] == list(range(n))
    assert {d["reason"] for d in dead} == {"low_feature_coverage"}
    assert not out.exists()


def test_a_table_with_some_bad_rows_is_scored_and_its_dead_letters_summarised(
    tmp_path: Path,
) -> None:
    table = read_table(ZTF).take(np.arange(40))
    manifest = bundles_dir() / bundle_dirname("ztf", "Periodic", "mcdsvdd") / "manifest.json"
    used = [table.feature_names.index(n) for n in json.loads(manifest.read_text())["feature_names"]]
    table.features[3] = np.nan  # every feature null: it would score at the top
    table.features[5] = np.nan
    table.features[5, used[:10]] = 1.0  # 10 of 129 (the models share their features)
    table.features[7, used[0]] = np.inf
    table.features[9] = np.nan
    write_table(table, tmp_path / "mixed.parquet")
    out = tmp_path / "scores.csv"
    result = cli("score", str(tmp_path / "mixed.parquet"), str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dead-lettered 4 of 40 by reason (every one: ")
    assert lines[1].split()[:2] == ["null_features", "3"]  # most frequent first
    assert "offset 3: 0 of the 129 features of model" in lines[1]
    assert lines[2].split()[:2] == ["non_finite_feature", "1"]
    assert "offset 7: feature " in lines[2]
    assert lines[3].startswith("read 40, scored 36, dead-lettered 4 in ")
    assert len(lines) == 4  # no hint: the input is this survey's
    assert len(out.read_text().splitlines()) == 1 + 36
    dead = (tmp_path / "scores.dead-letters.csv").read_text().splitlines()
    assert dead[0] == '"source_topic","source_partition","source_offset","reason","error"'
    assert [line.split(",")[2] for line in dead[1:]] == ["3", "5", "7", "9"]
    # a later run without dead letters leaves no stale list beside its scores
    write_table(table.take(np.arange(3)), tmp_path / "clean.parquet")
    assert cli("score", str(tmp_path / "clean.parquet"), str(out)).returncode == 0
    assert not (tmp_path / "scores.dead-letters.csv").exists()
    # the scores alone: the most anomalous per routed class
    scores = tmp_path / "scores.parquet"
    assert cli("score", str(tmp_path / "mixed.parquet"), str(scores)).returncode == 0
    listed = cli("top", "--scores", str(scores), "--n", "2")
    assert listed.returncode == 0, listed.stderr
    rows = pq.read_table(scores).to_pylist()
    for top in {r["top_class"] for r in rows}:
        mine = sorted(
            (r for r in rows if r["top_class"] == top),
            key=lambda r: (-r["percentile"], -r["score"]),
        )
        at = listed.stdout.index(f"routed to {top}: top 2\n")
        block = listed.stdout[at:].splitlines()[2:4]
        assert [line.split()[0] for line in block] == [r["oid"] for r in mine[:2]]
    assert listed.stdout.splitlines()[-1] == f"36 objects scored by {scores} (mcdsvdd-ens-lite)"


def test_replay_and_top_of_the_other_surveys_table(tmp_path: Path) -> None:
    replay = cli("replay", "--files", str(LSST), "--out", str(tmp_path / "night"))
    assert replay.returncode == 2
    assert one_error_line(replay, "replay").endswith("add --survey lsst")
    assert f"(every one: _dead-letters-*.parquet in {tmp_path / 'night'})" in replay.stdout
    assert read_dead_letters(tmp_path / "night").num_rows == 2000
    top = cli("top", "--data", str(LSST), "--n", "1")
    assert top.returncode == 2
    assert "nothing scored: all 2000 inputs" in one_error_line(top, "top")
    assert "low_feature_coverage     2000  first: " in top.stdout
