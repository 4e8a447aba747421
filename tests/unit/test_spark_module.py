"""The Fink-style Spark module's function on a pandas batch, without Spark: bitwise the scores of
``score``'s pipeline on the same rows, dead letters as rows with their reason, the bundles loaded
once per process; pyspark is not needed for any of it, and its absence is one line naming the
``spark`` extra."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from models.extras import MissingExtraError
from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.table import TOP_PROB_PREFIX, read_table, write_table
from models.taxonomy import TOP_CLASSES
from service.config import load_settings
from service.io.sinks.files import CollectingSink
from service.pipeline import Pipeline

# what score's output says of each row, compared bitwise (not when or where it was scored)
COMPARED = (
    "oid",
    "survey",
    "top_class",
    "top_class_probability",
    "scorer",
    "score",
    "percentile",
    "nearest_subclass",
    "model_version",
    "model_checksum",
    "service_version",
    "feature_coverage",
)


@pytest.fixture
def utilities(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The module's utilities imported with pyspark made unimportable."""
    for name in ("pyspark", "pyspark.sql", "pyspark.sql.functions"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "service.spark.anomaly_detection.utilities", raising=False)
    return importlib.import_module("service.spark.anomaly_detection.utilities")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 rows of the sample, four of them dead letters (as test_offline_summary's)."""
    table = read_table(sample_dir() / "objects.parquet").take(np.arange(200))
    manifest = bundles_dir() / bundle_dirname("ztf", "Periodic", "mcdsvdd") / "manifest.json"
    used = [table.feature_names.index(n) for n in json.loads(manifest.read_text())["feature_names"]]
    table.features[3] = np.nan
    table.features[5] = np.nan
    table.features[5, used[:10]] = 1.0
    table.features[7, used[0]] = np.inf
    table.features[150] = np.nan
    path = tmp_path_factory.mktemp("spark-module") / "mixed.parquet"
    write_table(table, path)
    return path


def scored_by_score(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The records and dead letters of ``alert-anomaly score``'s pipeline (in process)."""
    files = {"kind": "files", "paths": [path], "format": "container", "schema_version": None}
    settings = load_settings(None, {"input": files, "output": {"kind": "memory"}})
    pipeline = Pipeline(settings)
    sink = pipeline.make_sink()
    assert isinstance(sink, CollectingSink)
    pipeline.replay(sink=sink, progress=None)
    return sorted(sink.records, key=lambda r: r["source_offset"]), sink.dead


def batch(path: Path) -> tuple[pd.Series, pd.DataFrame, pd.DataFrame]:
    frame = pq.read_table(path).to_pandas()
    names = list(read_table(path).feature_names)
    return frame["oid"], frame[names], frame[[TOP_PROB_PREFIX + t for t in TOP_CLASSES]]


def test_a_pandas_batch_scores_bitwise_as_score_with_dead_letters_as_rows(
    utilities: Any, mixed: Path
) -> None:
    out = utilities.score_frame(*batch(mixed))
    assert list(out.columns) == utilities.output_columns().names
    records, dead = scored_by_score(mixed)
    assert len(out) == 200
    assert len(records) == 196
    assert out["source_offset"].tolist() == list(range(200))  # input order
    scored = out[out["reason"].isna()].reset_index(drop=True)
    assert scored["oid"].tolist() == [r["oid"] for r in records]
    for name in COMPARED:
        mine = scored[name].to_numpy()
        theirs = [r[name] for r in records]
        if name in ("score", "percentile", "top_class_probability", "feature_coverage"):
            assert mine.dtype == np.float32, name
            assert mine.tobytes() == np.asarray(theirs, np.float32).tobytes(), name
        else:
            assert [None if v is None or v != v else v for v in mine.tolist()] == theirs, name
    letters = out[out["reason"].notna()]
    assert letters["source_offset"].tolist() == [d["source_offset"] for d in dead] == [3, 5, 7, 150]
    assert letters["reason"].tolist() == [d["reason"] for d in dead]
    assert letters["error"].tolist() == [d["error"] for d in dead]
    assert letters["oid"].tolist() == batch(mixed)[0].iloc[[3, 5, 7, 150]].tolist()
    assert letters["score"].isna().all()
    assert letters["model_version"].isna().all()


def test_the_bundles_are_loaded_once_per_process_and_settings(
    utilities: Any, mixed: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []
    real = utilities.AlertProcessor

    def counting(settings: Any) -> Any:
        made.append(settings)
        return real(settings)

    monkeypatch.setattr(utilities, "AlertProcessor", counting)
    oid, features, probabilities = batch(mixed)
    first = utilities.score_frame(oid[:50], features[:50], probabilities[:50])
    second = utilities.score_frame(oid[50:], features[50:], probabilities[50:])
    assert len(made) == 1  # the second batch reused the first's processor
    assert len(first) == 50
    assert len(second) == 150
    other = utilities.settings_json({"model": {"min_feature_coverage": 0.5}})
    utilities.score_frame(oid[:10], features[:10], probabilities[:10], other)
    assert len(made) == 2
    assert made[1].model.min_feature_coverage == 0.5
    assert made[1].model.inference == "inline"  # never a worker process per Spark worker


def test_arrow_batches_of_table_rows_score_as_pandas_columns(utilities: Any, mixed: Path) -> None:
    arrow = pq.read_table(mixed)
    out = list(utilities.score_batches(arrow.to_batches(max_chunksize=64)))
    assert [b.num_rows for b in out] == [64, 64, 64, 8]
    for got in out:
        assert got.schema == utilities.arrow_columns_for_spark()
    scores = np.concatenate([b.column("score").to_numpy(zero_copy_only=False) for b in out])
    expected = utilities.score_frame(*batch(mixed))["score"].to_numpy()
    assert scores.tobytes() == expected.tobytes()


def test_without_pyspark_the_spark_module_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    monkeypatch.setitem(sys.modules, "pyspark.sql.functions", None)
    monkeypatch.delitem(sys.modules, "service.spark.anomaly_detection.processor", raising=False)
    with pytest.raises(MissingExtraError) as caught:
        importlib.import_module("service.spark.anomaly_detection.processor")
    assert caught.value.extra == "spark"
    assert "needs the 'spark' extra: pip install 'alert-anomaly[spark]'" in str(caught.value)
    assert "\n" not in str(caught.value)
