"""`alert-anomaly run` end to end on a real Kafka-protocol broker (see tests/conftest.py)."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from models.bundle import load_bundle
from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.scorers import DEFAULT_SCORERS
from models.scoring import Scorer
from models.table import read_table
from models.taxonomy import TOP_CLASSES
from service import __version__
from service.config import KafkaSettings
from service.demo import poison_messages, publish, read_topic, sample_messages
from service.io.codecs.avro import decode_output
from service.io.kafka import create_topics
from tests.integration.conftest import CLI, ServiceProcess

Start = Callable[..., ServiceProcess]


def topics(bootstrap: str, prefix: str, partitions: int) -> tuple[str, str, str]:
    names = (f"{prefix}-in", f"{prefix}-scores", f"{prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), names[:1], partitions)
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), names[1:])
    return names


def service_args(bootstrap: str, names: tuple[str, str, str], group: str, *extra: str) -> list[str]:
    return [
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        names[0],
        "--output-topic",
        names[1],
        "--dead-letter-topic",
        names[2],
        "--group-id",
        group,
        "--metrics-port",
        "0",
        *extra,
    ]


def offline_scores(n: int) -> dict[str, tuple[str, float, float, str | None]]:
    """Scores of the first n sample objects computed directly from the table with the bundles."""
    table = read_table(sample_dir() / "objects.parquet").take(np.arange(n))
    tops = np.array(TOP_CLASSES)[np.argmax(table.prob_top, axis=1)]
    out = {}
    for top in TOP_CLASSES:
        bundle = load_bundle(bundles_dir() / bundle_dirname("ztf", top, DEFAULT_SCORERS[top]))
        rows = table.take(tops == top)
        scores = Scorer(bundle, "cpu").score(rows.columns(bundle.feature_names).astype(np.float32))
        for i, oid in enumerate(rows.oid):
            out[str(oid)] = (top, scores.raw[i], scores.percentile[i], scores.nearest[i])
    return out


def lineage(outputs: list[Message]) -> Counter[tuple[int, int]]:
    """How many scores each input (partition, offset) received."""
    records = (decode_output(m.value()) for m in outputs)
    return Counter((r["source_partition"], r["source_offset"]) for r in records)


def scores_until_covered(
    bootstrap: str, topic: str, placed: list[tuple[int, int]], stall_s: float = 120
) -> Counter[tuple[int, int]]:
    """Read the score topic until every input (partition, offset) has a score, or until no new
    score came for ``stall_s`` (a loaded machine scores slower, but it keeps scoring: only a
    stall means something is lost)."""
    wanted = set(placed)
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "covered", "enable.auto.commit": False}
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    counts: Counter[tuple[int, int]] = Counter()
    last_new = time.monotonic()
    try:
        while not wanted <= set(counts) and time.monotonic() - last_new < stall_s:
            messages = [m for m in consumer.consume(1000, 0.5) if m.error() is None]
            if messages:
                counts += lineage(messages)
                last_new = time.monotonic()
    finally:
        consumer.close()
    return counts


def restart_covers_everything(
    bootstrap: str,
    names: tuple[str, str, str],
    group: str,
    placed: list[tuple[int, int]],
    service_process: Start,
) -> Counter[tuple[int, int]]:
    """A new instance after a crash: it scores until every input has an output (none missing)
    and stops cleanly; returns the outputs per input (the duplicates are the redone work)."""
    second = service_process(*service_args(bootstrap, names, group))
    second.assigned()
    counts = scores_until_covered(bootstrap, names[1], placed)
    assert second.terminate() == 0
    counts = lineage(read_topic(bootstrap, names[1], sum(counts.values()) + 1, 2))
    assert set(counts) == set(placed)  # every input has an output, none missing
    return counts


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in got}


def test_end_to_end_scores_equal_offline_scoring(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    n = 600
    names = topics(kafka_bootstrap, topic_prefix, partitions=2)
    publish(kafka_bootstrap, names[0], sample_messages(n))
    service = service_process(*service_args(kafka_bootstrap, names, topic_prefix))
    outputs = read_topic(kafka_bootstrap, names[1], n, timeout_s=120)
    assert service.terminate() == 0
    stopped = service.event("service_stopped")
    assert stopped["scored"] == n
    assert stopped["left_in_flight"] == 0
    # the first message teaches the batch decoder the layout; consumed batches of a few
    # messages or more are decoded with it, smaller ones by fastavro
    decoded = stopped["decoded"]
    assert decoded["batch"] + decoded["generic"] == n
    assert decoded["batch"] > n / 2

    scores = [decode_output(m.value()) for m in outputs]
    assert len(scores) == n
    expected = offline_scores(n)
    assert sorted(s["oid"] for s in scores) == sorted(expected)
    for s, message in zip(scores, outputs, strict=True):
        top, raw, percentile, nearest = expected[s["oid"]]
        assert message.key() == s["oid"].encode()
        assert s["top_class"] == top
        assert s["scorer"] == DEFAULT_SCORERS[top]
        assert np.float32(s["score"]) == raw  # bitwise: batching does not change scores
        assert np.float32(s["percentile"]) == percentile
        assert s["nearest_subclass"] == nearest
        assert s["survey"] == "ztf"
        assert s["service_version"] == __version__
        assert s["source_topic"] == names[0]
        assert s["source_timestamp"] is not None
    assert len({(s["source_partition"], s["source_offset"]) for s in scores}) == n
    assert sum(committed(kafka_bootstrap, topic_prefix, names[0], 2).values()) == n


def test_poison_messages_are_dead_lettered_and_committed_past(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    names = topics(kafka_bootstrap, topic_prefix, partitions=1)
    good = list(sample_messages(40))
    poison = poison_messages()
    messages: list[tuple[bytes | None, bytes]] = []
    for i, (key, value) in enumerate(good):
        messages.append((key, value))
        if i % 10 == 5:
            messages.append(poison[i // 10][:2])
    placed = publish(kafka_bootstrap, names[0], messages)
    service = service_process(*service_args(kafka_bootstrap, names, topic_prefix))
    dead = read_topic(kafka_bootstrap, names[2], len(poison), timeout_s=120)
    scores = read_topic(kafka_bootstrap, names[1], len(good), timeout_s=60)
    assert service.terminate() == 0  # the last commit covers every message

    assert sorted(decode_output(m.value())["oid"] for m in scores) == sorted(
        k.decode() for k, _ in good
    )
    assert len(dead) == len(poison)
    poison_offsets = {
        placed[i][1] for i, (key, _) in enumerate(messages) if key and key.startswith(b"poison")
    }
    for message, (key, value, reason) in zip(dead, poison, strict=True):
        headers = {k: v.decode() for k, v in message.headers() or []}
        assert message.key() == key
        assert message.value() == value  # the original bytes
        assert headers["alert_anomaly.error"] == reason
        assert headers["alert_anomaly.error_message"]
        assert headers["alert_anomaly.source_topic"] == names[0]
        assert headers["alert_anomaly.source_partition"] == "0"
        assert int(headers["alert_anomaly.source_offset"]) in poison_offsets
        assert headers["alert_anomaly.service_version"] == __version__
    logged = {e["reason"] for e in service.events if e.get("event") == "dead_letter"}
    assert logged == {p[2] for p in poison}
    assert committed(kafka_bootstrap, topic_prefix, names[0], 1) == {0: len(messages)}


def test_sigkill_mid_stream_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    n = 3000
    names = topics(kafka_bootstrap, topic_prefix, partitions=2)
    placed = publish(kafka_bootstrap, names[0], sample_messages(n))
    small_batches = ("--batch-rows", "8", "--batch-delay-ms", "5")
    first = service_process(*service_args(kafka_bootstrap, names, topic_prefix, *small_batches))
    first.wait_for_metric("alert_anomaly_commits_total", 1, timeout=120)
    first.kill()
    before = read_topic(kafka_bootstrap, names[1], n, timeout_s=5)
    assert 0 < len(before) < n, "the kill must happen mid-stream"

    counts = restart_covers_everything(
        kafka_bootstrap, names, topic_prefix, placed, service_process
    )
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\nSIGKILL after {len(before)} of {n} outputs; {duplicates} duplicates after restart")
    assert duplicates <= len(before)  # only work whose offsets were not committed is redone


def test_two_instances_share_the_partitions(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    n = 1200
    names = topics(kafka_bootstrap, topic_prefix, partitions=4)
    args = service_args(kafka_bootstrap, names, topic_prefix)
    a = service_process(*args)
    a.assigned()
    b = service_process(*args)
    b.assigned()
    a.wait_for(
        lambda e: (
            e.get("event") == "partitions_assigned"
            and bool(e.get("partitions"))
            and len(e["partitions"]) < 4
        )
    )
    placed = publish(kafka_bootstrap, names[0], sample_messages(n))
    outputs = read_topic(kafka_bootstrap, names[1], n, timeout_s=120)
    assert a.terminate() == 0
    assert b.terminate() == 0
    assert set(lineage(outputs)) == set(placed)
    scored = [p.event("service_stopped")["scored"] for p in (a, b)]
    assert all(count > 0 for count in scored), scored
    assert sum(scored) == n  # once each: no rebalance happened while scoring


class SteadyProducer:
    """Publishes the sample over and over, a batch at a time, until stopped: the stream goes
    on during whatever the test does meanwhile."""

    def __init__(self, bootstrap: str, topic: str, batch: int = 50) -> None:
        self.placed: list[tuple[int, int]] = []
        self._stop = threading.Event()
        sample = list(sample_messages())

        def run() -> None:
            i = 0
            while not self._stop.is_set():
                chunk = [sample[(i + k) % len(sample)] for k in range(batch)]
                self.placed += publish(bootstrap, topic, chunk)
                i += batch
                self._stop.wait(0.05)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> list[tuple[int, int]]:
        self._stop.set()
        self._thread.join(60)
        return self.placed


def test_a_rebalance_mid_stream_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    """A second instance joins while the stream flows and the first one scores: the first gives
    partitions up mid-stream, both score, every input gets a score."""
    names = topics(kafka_bootstrap, topic_prefix, partitions=4)
    producer = SteadyProducer(kafka_bootstrap, names[0], batch=10)  # ~100 alerts/s at most
    try:
        one_by_one = ("--batch-rows", "1", "--batch-delay-ms", "5")
        a = service_process(*service_args(kafka_bootstrap, names, topic_prefix, *one_by_one))
        a.wait_for_metric("alert_anomaly_messages_produced_total", 100, timeout=120)
        b = service_process(*service_args(kafka_bootstrap, names, topic_prefix, *one_by_one))
        a.event("partitions_revoked")  # a gave partitions up while it was scoring
        b.assigned()
        b.wait_for_metric("alert_anomaly_messages_produced_total", 50, timeout=120)
    finally:
        placed = producer.stop()
    counts = scores_until_covered(kafka_bootstrap, names[1], placed)
    assert a.terminate() == 0
    assert b.terminate() == 0
    assert set(counts) == set(placed)
    scored = [p.event("service_stopped")["scored"] for p in (a, b)]
    assert all(count > 0 for count in scored), scored
    duplicates = sum(c - 1 for c in counts.values())
    print(f"\nrebalance mid-stream: {len(placed)} inputs, scored {scored}, {duplicates} duplicates")
    assert duplicates <= sum(scored) - len(placed)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "invalid settings: no input topics"),
        (["--topic", "x", "--batch-rows", "0"], {}, "expected a positive integer, got 0"),
        (["--topic", "x"], {"ALERT_ANOMALY_BACTH__MAX_ROWS": "2"}, "unknown environment variable"),
        (["--topic", "x", "--survey", "tess"], {}, "unknown survey 'tess'"),
        (["--topic", "x", "--bundles", "/nonexistent"], {}, "does not exist or is not a directory"),
        (["--topic", "x", "--device", "cuda:7"], {}, "CUDA is not available"),
        (["--config", "/nonexistent.toml"], {}, "config file /nonexistent.toml does not exist"),
    ],
)
def test_configuration_errors_are_one_line(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    result = subprocess.run(
        [*CLI, "run", *args], capture_output=True, text=True, env={**clean, **env}, timeout=120
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_check_offline_validates_settings_and_models_without_a_broker() -> None:
    result = subprocess.run(
        [*CLI, "run", "--topic", "x", "--check", "--offline"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "ztf/periodic-mcdsvdd" in result.stdout
    assert "Kafka client properties: accepted" in result.stdout
    assert "check passed (offline" in result.stdout


def test_check_asks_the_broker_for_the_input_topics(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    names = topics(kafka_bootstrap, topic_prefix, partitions=1)
    pattern = f"^{topic_prefix}-i.$"
    ok = subprocess.run(
        [
            *CLI,
            "run",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            names[0],
            "--topic",
            pattern,
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert f"brokers: {kafka_bootstrap} answered" in ok.stdout
    assert f"input {names[0]}: {names[0]}" in ok.stdout
    assert f"input {pattern}: {names[0]}" in ok.stdout
    missing = subprocess.run(
        [
            *CLI,
            "run",
            "--bootstrap-servers",
            kafka_bootstrap,
            "--topic",
            f"{topic_prefix}-nosuch",
            "--check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2
    assert f"input topic '{topic_prefix}-nosuch' does not exist" in missing.stderr.splitlines()[-1]
