"""`alert-anomaly run` with an expert's re-ranker (``model.reranker``) on a real broker: a first set
of alerts is re-ranked by re-ranker A; B is swapped in (an atomic symlink swap) while the service
runs; the later alerts are re-ranked by B. Every input has exactly one output, each names the
re-ranker that made it and holds its re-ranked percentile."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.features import paper_features
from models.rerank import ANOMALY, REGULAR, fit_reranker
from models.resources import sample_dir
from models.table import read_table
from service.core.reranking import LoadedReranker, load
from service.demo import publish, read_topic, sample_messages
from service.io.codecs.avro import decode_output
from tests.integration.test_service import service_args, topics

pytest.importorskip("coniferest")

FIRST, SECOND = 60, 60  # alerts before and after the swap


def save_reranker(expert: str, seed: int, out: Path) -> LoadedReranker:
    """A small re-ranker of ``expert`` fitted on the committed sample with made-up verdicts."""
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


def swap(link: Path, target: Path) -> None:
    """Point ``link`` at ``target`` atomically (a new symlink renamed over the old one)."""
    new = link.with_name(link.name + ".new")
    new.symlink_to(target.name)
    os.replace(new, link)


def expected_reranked(loaded: LoadedReranker, record: dict[str, Any], table: Any) -> float:
    """The re-ranked percentile of a scored record, computed from the table: the re-ranker's
    features as the stream holds them (float32) and the record's percentile."""
    i = int(np.flatnonzero(table.oid == record["oid"])[0])
    names = loaded.reranker.feature_names
    row = table.columns(names)[i].astype(np.float32).astype(np.float64)
    return float(loaded.reranker.rerank(row[None, :], np.array([record["percentile"]]))[0])


@pytest.mark.slow  # 20-30 s: two re-rankers fitted, the service started, two sets scored
def test_a_new_reranker_is_picked_up_without_a_restart_and_without_lost_or_double_outputs(
    kafka_bootstrap: str, topic_prefix: str, service_process: Any, tmp_path: Path
) -> None:
    a = save_reranker("ana", 1, tmp_path / "ana")
    b = save_reranker("bob", 2, tmp_path / "bob")
    assert a.checksum != b.checksum
    current = tmp_path / "current"
    swap(current, tmp_path / "ana")
    names = topics(kafka_bootstrap, topic_prefix, partitions=2)
    env = {
        "ALERT_ANOMALY_MODEL__RERANKER": str(current),
        "ALERT_ANOMALY_MODEL__RELOAD_INTERVAL_S": "0.2",
    }
    service = service_process(*service_args(kafka_bootstrap, names, topic_prefix), env=env)
    assert service.event("reranker_loaded")["checksum"] == a.checksum
    messages = list(sample_messages(FIRST + SECOND))
    first = publish(kafka_bootstrap, names[0], messages[:FIRST])
    read_topic(kafka_bootstrap, names[1], FIRST, timeout_s=120)  # all of the first set scored

    swap(current, tmp_path / "bob")
    reloaded = service.wait_for(lambda e: e.get("event") == "reranker_reloaded")
    assert (reloaded["checksum"], reloaded["previous"]) == (b.checksum, a.checksum)
    second = publish(kafka_bootstrap, names[0], messages[FIRST:])
    read_topic(kafka_bootstrap, names[1], FIRST + SECOND, timeout_s=120)
    assert service.metric("alert_anomaly_model_reloads_total") == 1
    assert service.terminate() == 0

    # one more than expected, briefly: a duplicate would show up here
    outputs = read_topic(kafka_bootstrap, names[1], FIRST + SECOND + 1, timeout_s=3)
    records = [decode_output(m.value()) for m in outputs]
    placed = Counter((r["source_partition"], r["source_offset"]) for r in records)
    assert set(placed) == set(first) | set(second)
    assert set(placed.values()) == {1}  # every input exactly one output
    table = read_table(sample_dir() / "objects.parquet")
    by_position = {(r["source_partition"], r["source_offset"]): r for r in records}
    for positions, loaded in ((first, a), (second, b)):
        for position in positions:
            record = by_position[position]
            assert record["reranker_expert"] == loaded.expert
            assert record["reranker_checksum"] == loaded.checksum
            assert record["reranker_version"] == loaded.version
            assert record["model_version"]  # and the bundle's version, as before
            expected = expected_reranked(loaded, record, table)
            assert np.isclose(record["reranked_percentile"], expected, rtol=1e-5, atol=1e-4)
