"""A Rubin alert stream end to end with the shipped LSST bundles: simulated alert packets in
Rubin's wire format scored by the live service, a replay of the topic and offline from an Avro
file, with the same scores bit for bit; and `alert-anomaly demo --survey lsst`."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from models import rubin
from models.simulate.lsst_dataset import packet_bytes, simulate_packets
from service.config import KafkaSettings
from service.demo import publish, read_topic, run_demo
from service.io.codecs.avro import decode_output
from service.io.kafka import create_topics
from service.io.sinks.files import read_scores
from tests.integration.conftest import CLI
from tests.integration.test_replay import Start, by_lineage
from tests.integration.test_service import service_args


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--no-progress"], capture_output=True, text=True, timeout=300
    )


def by_oid(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        r["oid"]: (np.float32(r["score"]), np.float32(r["percentile"]), r["scorer"]) for r in rows
    }


@pytest.mark.slow  # 72 s alone on 2 quiet cores: `make slow`
def test_rubin_packets_live_replay_and_offline_agree_bitwise(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start, tmp_path: Path
) -> None:
    n = 150
    packets = [packet for _, packet in simulate_packets(n, 11)]
    names = (f"{topic_prefix}-alerts", f"{topic_prefix}-scores", f"{topic_prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names[:1], 2)
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names[1:])
    publish(kafka_bootstrap, names[0], packet_bytes(iter(packets)))  # Rubin's framing

    live = service_process(*service_args(kafka_bootstrap, names, topic_prefix, "--survey", "lsst"))
    outputs = [decode_output(m.value()) for m in read_topic(kafka_bootstrap, names[1], n, 120)]
    assert live.terminate() == 0
    assert len(outputs) == n
    assert {(r["survey"], r["top_class"], r["scorer"]) for r in outputs} == {
        ("lsst", "All", "iforest")  # the survey's default unrouted model
    }
    assert {r["oid"] for r in outputs} == {str(p["diaObject"]["diaObjectId"]) for p in packets}
    live_scores = by_lineage(outputs)

    replayed = cli(
        "replay", "--bootstrap-servers", kafka_bootstrap, "--topic", names[0],
        "--survey", "lsst", "--out", str(tmp_path / "replay"),
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert f"read {n}, scored {n}, dead-lettered 0" in replayed.stdout
    assert by_lineage(read_scores(tmp_path / "replay").to_pylist()) == live_scores

    avro = tmp_path / "alerts.avro"  # the same packets as a plain Avro file of Rubin's schema
    with open(avro, "wb") as fh:
        fastavro.writer(fh, rubin.alert_schema(rubin.latest_version()), packets)
    offline = cli("score", "--survey", "lsst", str(avro), str(tmp_path / "scores.parquet"))
    assert offline.returncode == 0, offline.stderr
    assert by_oid(pq.read_table(tmp_path / "scores.parquet").to_pylist()) == by_oid(outputs)


def test_the_lsst_demo_scores_packets_and_dead_letters_the_bad_ones() -> None:
    result = run_demo(40, survey="lsst")
    assert result.stats.scored == 40
    assert len(result.scores) == 40
    assert {s["top_class"] for s in result.scores} == {"All"}
    assert {str(s["oid"]) for s in result.scores} == set(result.truth)
    reasons = Counter(
        dict(m.headers() or {})["alert_anomaly.error"].decode() for m in result.dead_letters
    )
    assert reasons == Counter({"undecodable": 1, "no_object": 1, "unknown_schema": 1})
