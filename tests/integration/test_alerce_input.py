"""ALeRCE's real input end to end: records of every stored version of ALeRCE's classifier record,
with ALeRCE's feature names, are scored with full feature coverage (by name) by the shipped
bundles and default settings (apart from the record-version switch); records named another
way are dead letters; a daily topic created while the service runs is consumed; a tombstone's
dead letter is a tombstone."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable

import fastavro
import numpy as np
import pytest

from models.records import input_records
from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.table import read_table
from service.config import KafkaSettings
from service.demo import publish, read_topic
from service.io.codecs.avro import decode_output
from service.io.codecs.surveys import get_survey
from service.io.kafka import METADATA_REFRESH_MS, consumer_config, create_topics
from tests.integration.conftest import ServiceProcess

Start = Callable[..., ServiceProcess]
N = 120


def encoded(version: str, n: int = N) -> list[tuple[bytes | None, bytes | None]]:
    schema = fastavro.parse_schema(get_survey("ztf").schema(version))
    table = read_table(sample_dir() / "objects.parquet")
    out: list[tuple[bytes | None, bytes | None]] = []
    for i, record in enumerate(input_records(table, version=version)):
        if i >= n:
            break
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        key = record.get("oid") or record.get("aid")
        out.append((str(key).encode(), buffer.getvalue()))
    return out


def valued_shares(n: int) -> dict[str, float]:
    """oid -> the share of the shipped models' features that have a value (as float32)."""
    table = read_table(sample_dir() / "objects.parquet").take(np.arange(n))
    manifest = bundles_dir() / bundle_dirname("ztf", "Periodic", "mcdsvdd") / "manifest.json"
    values = table.columns(json.loads(manifest.read_text())["feature_names"])
    shares = np.count_nonzero(~np.isnan(values), axis=1) / values.shape[1]
    return {str(o): float(np.float32(v)) for o, v in zip(table.oid, shares, strict=True)}


def run_args(bootstrap: str, topic: str, prefix: str, *extra: str) -> list[str]:
    return [
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        topic,
        "--output-topic",
        f"{prefix}-scores",
        "--dead-letter-topic",
        f"{prefix}-dlq",
        "--group-id",
        prefix,
        "--metrics-port",
        "0",
        *extra,
    ]


@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_every_alerce_version_is_scored_with_full_coverage(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start, version: str
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    topic = f"{topic_prefix}-in"
    create_topics(kafka, [topic, f"{topic_prefix}-scores", f"{topic_prefix}-dlq"])
    publish(kafka_bootstrap, topic, encoded(version))
    switch = () if version == "3" else ("--schema-version", version)  # 3 is the default
    service = service_process(*run_args(kafka_bootstrap, topic, topic_prefix, *switch))
    scores = [
        decode_output(m.value())
        for m in read_topic(kafka_bootstrap, f"{topic_prefix}-scores", N, 120)
    ]
    # every feature carried by name (nothing absent); each score's coverage: those with a value
    assert service.metric("alert_anomaly_features_absent_total") == 0
    assert service.terminate() == 0
    assert len(scores) == N
    assert {s["oid"]: s["feature_coverage"] for s in scores} == valued_shares(N)
    stopped = service.event("service_stopped")
    assert stopped["dead_lettered"] == 0
    assert stopped["decoded"]["batch"] > 0  # the real layout takes the fast path


def test_records_named_another_way_are_dead_letters(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    topic = f"{topic_prefix}-in"
    create_topics(kafka, [topic, f"{topic_prefix}-scores", f"{topic_prefix}-dlq"])
    schema = fastavro.parse_schema(get_survey("ztf").schema("3"))
    table = read_table(sample_dir() / "objects.parquet")
    messages: list[tuple[bytes | None, bytes | None]] = []
    for i, record in enumerate(input_records(table)):
        if i == 40:
            break
        # another feature library's names (e.g. light-curve's), values as they were
        renamed = {f"lc_{name.lower()}": v for name, v in record["features"].items()}
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, {**record, "features": renamed})
        messages.append((record["oid"].encode(), buffer.getvalue()))
    messages.append((b"tombstone", None))
    publish(kafka_bootstrap, topic, messages)
    service = service_process(*run_args(kafka_bootstrap, topic, topic_prefix))
    dead = read_topic(kafka_bootstrap, f"{topic_prefix}-dlq", len(messages), 120)
    assert service.metric("alert_anomaly_features_absent_total") > 0
    assert service.terminate() == 0
    reasons = [dict(m.headers() or [])["alert_anomaly.error"].decode() for m in dead]
    assert reasons == ["low_feature_coverage"] * 40 + ["undecodable"]
    assert dead[-1].value() is None  # a tombstone stays a tombstone
    assert dead[-1].key() == b"tombstone"
    assert service.event("feature_coverage")["by_class"]


def test_a_daily_topic_created_while_running_is_consumed(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    # librdkafka looks for new topics matching a pattern at every metadata refresh
    refresh = consumer_config(KafkaSettings(), "g", "earliest")[
        "topic.metadata.refresh.interval.ms"
    ]
    assert int(refresh) == METADATA_REFRESH_MS <= 15_000
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, [f"{topic_prefix}-scores", f"{topic_prefix}-dlq"])
    pattern = f"^{topic_prefix}_lc_classifier_ztf_[0-9]{{8}}$"
    yesterday, today = (f"{topic_prefix}_lc_classifier_ztf_2026112{d}" for d in (8, 9))
    create_topics(kafka, [yesterday])
    publish(kafka_bootstrap, yesterday, encoded("3", 20))
    service = service_process(*run_args(kafka_bootstrap, pattern, topic_prefix))
    read_topic(kafka_bootstrap, f"{topic_prefix}-scores", 20, 120)
    create_topics(kafka, [today])
    created = time.monotonic()
    publish(kafka_bootstrap, today, encoded("3", 30))
    scores = read_topic(kafka_bootstrap, f"{topic_prefix}-scores", 50, 120)
    seconds = time.monotonic() - created
    assert service.terminate() == 0
    topics = [decode_output(m.value())["source_topic"] for m in scores]
    assert topics.count(today) == 30
    print(f"\nthe new daily topic was scored {seconds:.1f} s after its creation")
