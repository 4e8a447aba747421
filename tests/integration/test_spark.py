"""Scoring in a local Spark session, Fink's way: the module function (a pandas UDF over columns)
and ``mapInArrow`` over whole rows give bitwise the scores ``alert-anomaly score`` writes for the
same rows, and its dead letters as rows with their reason.

The session: ``local[2]``, a small driver, no UI, its files in a temporary directory, Arrow
batches of 100 rows (so each Python worker scores several batches with the bundles it loaded
once), stopped at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.table import read_table, write_table
from tests.integration.conftest import CLI

pytestmark = pytest.mark.slow

FLOATS = ("top_class_probability", "score", "percentile", "feature_coverage")
STRINGS = (
    "survey",
    "top_class",
    "scorer",
    "nearest_subclass",
    "model_version",
    "model_checksum",
    "service_version",
)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pyspark.sql import SparkSession  # the spark extra, in the dev install

    work = tmp_path_factory.mktemp("spark")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers run this Python
    session = (
        SparkSession.builder.master("local[2]")
        .appName("alert-anomaly-test")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "768m")
        .config("spark.local.dir", str(work))
        .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={work}")
        .config("spark.sql.warehouse.dir", str(work / "warehouse"))
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """600 rows of the sample (four of them dead letters) and ``score``'s output for them."""
    work = tmp_path_factory.mktemp("score")
    table = read_table(sample_dir() / "objects.parquet").take(np.arange(600))
    manifest = bundles_dir() / bundle_dirname("ztf", "Periodic", "mcdsvdd") / "manifest.json"
    used = [table.feature_names.index(n) for n in json.loads(manifest.read_text())["feature_names"]]
    table.features[3] = np.nan  # null_features
    table.features[5] = np.nan
    table.features[5, used[:10]] = 1.0
    table.features[7, used[0]] = np.inf  # non_finite_feature
    table.features[450] = np.nan
    write_table(table, work / "rows.parquet")
    result = subprocess.run(
        [*CLI, "score", str(work / "rows.parquet"), str(work / "scores.parquet"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "read 600, scored 596, dead-lettered 4" in result.stdout
    return work / "rows.parquet", work / "scores.parquet"


def assert_as_score(got: Any, rows: Path, scores: Path) -> None:
    """``got`` (pandas, a row per input row) holds ``score``'s records bitwise and its dead
    letters as rows with their reason and error."""
    ours = got.set_index("oid")
    assert len(ours) == 600
    assert ours.index.is_unique
    theirs = pq.read_table(scores).to_pandas().set_index("oid")
    assert len(theirs) == 596
    mine = ours[ours["reason"].isna()].loc[theirs.index]  # every scored row, and no other
    assert len(ours) - len(mine) == 4
    for name in FLOATS:
        assert mine[name].to_numpy().dtype == np.float32, name
        assert mine[name].to_numpy().tobytes() == theirs[name].to_numpy().tobytes(), name
    for name in STRINGS:
        same = mine[name].isna().to_numpy() & theirs[name].isna().to_numpy()
        equal = mine[name].to_numpy() == theirs[name].to_numpy()
        assert (same | equal).all(), name
    dead = pq.read_table(scores.with_name("scores.dead-letters.parquet")).to_pylist()
    oids = pq.read_table(rows, columns=["oid"]).column("oid").to_pylist()
    expected = {oids[d["source_offset"]]: (d["reason"], d["error"]) for d in dead}
    letters = ours[ours["reason"].notna()]
    assert {o: (r["reason"], r["error"]) for o, r in letters.iterrows()} == expected
    assert letters["score"].isna().all()


def test_the_fink_style_module_scores_as_score(
    spark: Any, scored: tuple[Path, Path], tmp_path: Path
) -> None:
    from service.spark.anomaly_detection.processor import anomaly_detection_module

    rows, scores = scored
    df = spark.read.parquet(str(rows)).repartition(3)  # three tasks on two workers
    out = anomaly_detection_module(df)
    assert out.columns == [*df.columns, "anomaly"]
    got = out.select("anomaly.*").toPandas()
    assert_as_score(got, rows, scores)


def test_map_in_arrow_over_whole_rows_scores_as_score(
    spark: Any, scored: tuple[Path, Path]
) -> None:
    from service.spark.anomaly_detection.processor import score_rows

    rows, scores = scored
    got = score_rows(spark.read.parquet(str(rows)).repartition(2)).toPandas()
    assert_as_score(got, rows, scores)
