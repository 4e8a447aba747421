"""`alert-anomaly publish-sample` (the compose stack's producer) against the test broker."""

from __future__ import annotations

import io
import os
import subprocess

import fastavro

from models.records import input_schema
from service.config import KafkaSettings
from service.demo import poison_messages, read_topic, sample_messages
from service.io.kafka import create_topics
from tests.integration.conftest import CLI


def test_publishes_the_sample_and_the_poison_to_the_configured_topic(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}-in"
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [topic], partitions=2)
    env = {  # configured as in docker-compose.yml: the environment only
        **os.environ,
        "ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ALERT_ANOMALY_INPUT__TOPICS": f'["{topic}"]',
    }
    result = subprocess.run(
        [*CLI, "publish-sample", "--n", "25", "--poison"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert f"published 25 sample alerts and 4 bad messages to {topic}" in result.stdout
    messages = read_topic(kafka_bootstrap, topic, 29)
    assert len(messages) == 29
    by_key = {m.key(): m.value() for m in messages}
    expected = dict(sample_messages(25))
    for key, value in expected.items():
        assert by_key[key] == value
        record = fastavro.schemaless_reader(io.BytesIO(value), input_schema(), None)
        assert isinstance(record, dict)
        assert record["oid"] == key.decode()
    assert {key for key, _, _ in poison_messages()} <= set(by_key)


def test_without_a_topic_it_fails_in_one_line(kafka_bootstrap: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    result = subprocess.run(
        [*CLI, "publish-sample", "--bootstrap-servers", kafka_bootstrap, "--n", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "alert-anomaly publish-sample: error: no topic: pass --topic or set input.topics"
    ]
