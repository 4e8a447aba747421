"""One engine: the same inputs - good records, records with null and infinite features, NaN
probabilities, a class without a model, bytes that are not a record - give bitwise the same
scores and the same dead letters (with the same reasons) live (`run`), replayed from the topic
(`replay --topic`) and offline from files (`replay --files`)."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow.parquet as pq

from models.records import input_records, input_schema
from models.resources import sample_dir
from models.table import read_table
from service.config import KafkaSettings
from service.demo import publish, read_topic
from service.io.codecs.avro import decode_output
from service.io.kafka import create_topics
from service.io.sinks.files import read_scores
from tests.integration.conftest import CLI, ServiceProcess
from tests.integration.test_service import service_args

Start = Callable[..., ServiceProcess]


def inputs() -> list[tuple[str, dict[str, Any] | bytes]]:
    """(name, record or raw bytes): 60 good records and one of each kind of bad or odd one."""
    records = list(input_records(read_table(sample_dir() / "objects.parquet").take(np.arange(66))))
    good = [(r["oid"], r) for r in records[:60]]
    nulls, infinite, nan_top, unknown, periodic_tie = (
        json.loads(json.dumps(r)) for r in records[60:65]
    )
    nulls["features"] = dict.fromkeys(nulls["features"])  # every feature null: null_features
    infinite["features"]["Amplitude_1"] = float("inf")
    nan_top["lc_classification"]["hierarchical"]["top"]["Transient"] = float("nan")
    unknown["lc_classification"]["hierarchical"]["top"] = {"Bogus": 0.9, "Periodic": 0.1}
    periodic_tie["lc_classification"]["hierarchical"]["top"] = {
        "Periodic": 0.5, "Transient": 0.5, "Stochastic": 0.0,
    }  # fmt: skip
    odd = [nulls, infinite, nan_top, unknown, periodic_tie]
    return [*good, *((r["oid"], r) for r in odd), ("garbage", b"\x00\xffnot avro at all")]


def schemaless(record: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, input_schema(), record)
    return buffer.getvalue()


def cli(*args: str) -> None:
    result = subprocess.run(
        [*CLI, *args, "--no-progress"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


def scores_of(records: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        r["oid"]: (
            r["top_class"],
            r["scorer"],
            np.float32(r["score"]).tobytes(),
            np.float32(r["percentile"]).tobytes(),
            r["nearest_subclass"],
            np.float32(r["feature_coverage"]).tobytes(),
        )
        for r in records
    }


def test_live_replay_and_offline_agree(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start, tmp_path: Path
) -> None:
    items = inputs()
    names = (f"{topic_prefix}-in", f"{topic_prefix}-scores", f"{topic_prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names)
    messages = [
        (name.encode(), item if isinstance(item, bytes) else schemaless(item))
        for name, item in items
    ]
    publish(kafka_bootstrap, names[0], messages)

    # live
    live = service_process(*service_args(kafka_bootstrap, names, topic_prefix))
    scores = read_topic(kafka_bootstrap, names[1], 61, timeout_s=120)
    dead = read_topic(kafka_bootstrap, names[2], 5, timeout_s=60)
    assert live.terminate() == 0
    live_scores = scores_of([decode_output(m.value()) for m in scores])
    live_dead = {m.key().decode(): dict(m.headers())["alert_anomaly.error"].decode() for m in dead}

    # replayed from the topic
    cli(
        "replay",
        "--bootstrap-servers",
        kafka_bootstrap,
        "--topic",
        names[0],
        "--out",
        str(tmp_path / "topic"),
    )
    replay_scores = scores_of(read_scores(tmp_path / "topic").to_pylist())
    offsets = {i: name for i, (name, _) in enumerate(items)}
    replay_dead = {
        offsets[d["source_offset"]]: d["reason"]
        for part in sorted((tmp_path / "topic").glob("_dead-letters-*.parquet"))
        for d in pq.read_table(part).to_pylist()
    }

    # offline, from one Avro file per record (as an archive holds them)
    files = tmp_path / "files"
    files.mkdir()
    for name, item in items:
        if isinstance(item, dict):
            buffer = io.BytesIO()
            fastavro.writer(buffer, input_schema(), [item])
            (files / f"{name}.avro").write_bytes(buffer.getvalue())
    cli("replay", "--files", str(files), "--out", str(tmp_path / "offline"))
    offline_scores = scores_of(read_scores(tmp_path / "offline").to_pylist())
    offline_dead = {
        Path(d["source_topic"]).stem: d["reason"]
        for part in sorted((tmp_path / "offline").glob("_dead-letters-*.parquet"))
        for d in pq.read_table(part).to_pylist()
    }

    assert len(live_scores) == 61  # 60 good, the tie
    assert live_scores[items[64][0]][0] == "Periodic"  # a tie goes to the first class
    assert live_scores == replay_scores == offline_scores  # bitwise
    expected = {
        "non_finite_feature",
        "null_features",
        "missing_probabilities",
        "unknown_class",
        "undecodable",
    }
    assert set(live_dead.values()) == expected
    assert live_dead == replay_dead
    assert offline_dead == {k: v for k, v in live_dead.items() if v != "undecodable"}
