"""The re-ranker in the scoring pipeline, through ``score`` (files, no broker): with
``model.reranker`` every record holds the re-ranked percentile of that re-ranker, computed on the
features it names; a re-ranker that does not load is one line and exit status 2."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from models.features import paper_features
from models.records import input_records
from models.rerank import ANOMALY, REGULAR, fit_reranker
from models.resources import sample_dir
from models.table import AlertTable, read_table
from service.cli import main
from service.config import load_settings
from service.core.processing import AlertProcessor
from service.core.reranking import LoadedReranker, load
from service.exceptions import SettingsError
from service.io.codecs.surveys import get_survey

ROWS = 60


def save_reranker(expert: str, seed: int, out: Path) -> LoadedReranker:
    """A small re-ranker of ``expert`` fitted on the committed sample with made-up verdicts."""
    pytest.importorskip("coniferest")
    table = read_table(sample_dir() / "objects.parquet")
    names = tuple(n for n in paper_features() if n in table.feature_names)
    X = table.columns(names)[:300]
    rng = np.random.default_rng(seed)
    pct = rng.uniform(0, 100, len(X))
    known = rng.choice(len(X), 20, replace=False)
    labels = np.where(np.arange(20) % 2 == 0, ANOMALY, REGULAR)
    reranker = fit_reranker(
        expert,
        names,
        X,
        X[known],
        labels,
        reference_percentile=pct,
        known_percentile=pct[known],
        n_trees=20,
        seed=seed,
    )
    reranker.save(out)
    return load(out)


def expected_reranked(
    loaded: LoadedReranker, oid: str, percentile: float, table: AlertTable
) -> float:
    """The re-ranked percentile of a scored object, computed from the table: the re-ranker's
    features as the stream holds them (float32) and the record's percentile."""
    i = int(np.flatnonzero(table.oid == oid)[0])
    row = table.columns(loaded.reranker.feature_names)[i].astype(np.float32).astype(np.float64)
    return float(loaded.reranker.rerank(row[None, :], np.array([percentile]))[0])


def alerts(tmp_path: Path) -> Path:
    table = read_table(sample_dir() / "objects.parquet").take(np.arange(ROWS))
    buffer = io.BytesIO()
    fastavro.writer(buffer, get_survey("ztf").schema(), list(input_records(table)))
    path = tmp_path / "alerts.avro"
    path.write_bytes(buffer.getvalue())
    return path


def test_score_writes_each_records_reranked_percentile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = save_reranker("ana", 1, tmp_path / "ana")
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__INFERENCE", "inline")
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__RERANKER", str(tmp_path / "ana"))
    out = tmp_path / "scores.parquet"
    assert main(["score", "--no-progress", str(alerts(tmp_path)), str(out)]) == 0
    records = pq.read_table(out).to_pylist()
    assert len(records) == ROWS
    table = read_table(sample_dir() / "objects.parquet")
    for r in records:
        assert (r["reranker_expert"], r["reranker_checksum"]) == ("ana", loaded.checksum)
        assert r["reranker_version"] == loaded.version
        expected = expected_reranked(loaded, r["oid"], r["percentile"], table)
        assert np.isclose(r["reranked_percentile"], expected, rtol=1e-5, atol=1e-4)
    assert len({r["reranked_percentile"] for r in records}) > ROWS // 2  # not one constant


def test_without_a_reranker_the_fields_are_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__INFERENCE", "inline")
    out = tmp_path / "scores.parquet"
    assert main(["score", "--no-progress", str(alerts(tmp_path)), str(out)]) == 0
    for r in pq.read_table(out).to_pylist():
        assert r["reranked_percentile"] is None
        assert r["reranker_expert"] is r["reranker_version"] is r["reranker_checksum"] is None


def test_a_reranker_that_does_not_load_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("coniferest")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__RERANKER", str(tmp_path / "empty"))
    code = main(["score", "--no-progress", str(alerts(tmp_path)), str(tmp_path / "s.parquet")])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            f"model.reranker: no re-ranker in {tmp_path / 'empty'} (manifest.json: No such file or "
            "directory)"
        )
    )


def test_a_reranker_of_other_features_than_the_bundles_is_refused(tmp_path: Path) -> None:
    """A ZTF re-ranker over the LSST bundles would rank every row on its fill values: refused
    at start (one line, exit 2), and on a hot reload the old one is kept."""
    save_reranker("ana", 1, tmp_path / "ana")
    settings = {
        "input": {"topics": ["t"]},
        "model": {"survey": "lsst", "inference": "inline", "reranker": str(tmp_path / "ana")},
    }
    with pytest.raises(SettingsError, match=r"model.reranker: the re-ranker of ana .* reads"):
        AlertProcessor(load_settings(None, settings))

    settings["model"] = {"inference": "inline", "reranker": str(tmp_path / "ana")}
    processor = AlertProcessor(load_settings(None, settings))  # ZTF: accepted
    assert processor.reranking.current is not None
    lsst = AlertProcessor(load_settings(None, {**settings, "model": {"survey": "lsst"}}))
    with pytest.raises(SettingsError, match="reads 129 features"):
        lsst._check_reranker(processor.reranking.current)
