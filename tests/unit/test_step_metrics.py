"""Step metrics on Kafka in ALeRCE's format (tests/unit/upstream/alerce_metrics.json): the
fields their schema requires as their producer writes them, one message per written batch from
the Kafka sink, never blocking or failing the scores. With ``ALERCE_PIPELINE_GIT`` (a clone's git
directory) the facts are re-read from the upstream files."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import KafkaError

from service.config import load_settings
from service.io.codecs.step_metrics import step_metrics
from service.io.sinks.kafka import KafkaSink
from service.ops.availability import Brokers
from service.ops.metrics import Metrics
from tests.alerce_upstream import facts, needs_clone, upstream
from tests.unit.test_kafka_sink import UNUSED, FakeProducer, counted, scored

FACTS = facts("metrics")


def their_schema_accepts(message: dict[str, Any]) -> None:
    """The checks of their JSON schema (required fields, their types; others allowed)."""
    schema = FACTS["schema"]
    for name in schema["required"]:
        assert name in message, name
    for name, kind in schema["types"].items():
        assert {"string": str}[kind] is type(message[name]), name


def test_a_message_has_what_their_schema_requires_as_their_producer_writes_it() -> None:
    received = datetime(2026, 12, 5, 21, 59, 59, 500000, tzinfo=UTC)
    sent = received + timedelta(seconds=0.25)
    message = json.loads(step_metrics(received, sent, ["ZTF1", "ZTF2"], "alert-anomaly", None))
    their_schema_accepts(message)
    assert message == {
        "timestamp_received": "2026-12-05T21:59:59.500000+00:00",  # datetime.isoformat()
        "timestamp_sent": "2026-12-05T21:59:59.750000+00:00",
        "execution_time": 0.25,
        "n_messages": 2,
        "oid": ["ZTF1", "ZTF2"],
        "source": "alert-anomaly",
        "survey": None,
    }


def test_the_sink_sends_one_per_batch_and_a_failure_is_counted_not_retried() -> None:
    settings = load_settings(
        None,
        {
            "kafka": {"bootstrap_servers": UNUSED},
            "output": {"topic": "scores", "metrics_topic": "metrics", "metrics_survey": "ztf"},
        },
    )
    now = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    metrics = Metrics()
    sink = KafkaSink(settings, metrics, lambda s: None, Brokers(UNUSED, 60.0), lambda: now)
    assert sink.outputs_per_row == 1  # metrics are not outputs: commits do not wait for them
    producer = FakeProducer()
    sink.producer = producer
    batch, rows = scored(3, 10)
    batch = dataclasses.replace(batch, seconds=0.5)
    sink.write(batch, rows)
    assert [s[0] for s in producer.sent] == ["scores"] * 3 + ["metrics"]
    _, key, value, headers, _ = producer.sent[3]
    assert (key, headers) == (None, None)
    message = json.loads(value or b"")
    their_schema_accepts(message)
    assert message["n_messages"] == 3
    assert message["oid"] == [r.oid for r in rows]
    assert message["survey"] == "ztf"
    assert message["execution_time"] == 0.5  # from the batch's scoring on (a fixed clock here)
    producer.report(3, KafkaError(KafkaError._MSG_TIMED_OUT))
    assert counted(metrics, "delivery_failures", topic="metrics") == 1
    assert sink.in_flight() == 3  # the scores only: the metrics message is not retried
    sink.close(0)


@needs_clone
def test_the_facts_are_still_upstream_s() -> None:
    schema = json.loads(upstream(FACTS["schema"]["file"]))
    assert sorted(schema["required"]) == sorted(FACTS["schema"]["required"])
    assert {k: v["type"] for k, v in schema["properties"].items()} == FACTS["schema"]["types"]
    assert schema["additionalProperties"] is FACTS["schema"]["additional_properties"]
    producer = upstream(FACTS["producer"]["file"])
    assert f"class {FACTS['producer']['class']}" in producer
    assert "json.dumps(metrics, cls=self.time_encoder)" in producer
    assert "self.producer.produce(topic, metrics)" in producer  # no key
    step = upstream(FACTS["step"]["file"])
    for fragment in (
        'self.metrics["timestamp_received"] = datetime.datetime.now(',
        'self.metrics["timestamp_sent"] = datetime.datetime.now(datetime.timezone.utc)',
        'self.metrics["execution_time"] = time_difference.total_seconds()',
        '"METRICS_SOURCE", f"{self.__class__.__name__}"',
        'self.metrics["survey"] = os.getenv("METRICS_SURVEY")',
        'extra_metrics["n_messages"] = len(message)',
    ):
        assert fragment in step, fragment
    generic = upstream("libs/apf/apf/metrics/generic.py")
    assert "return obj.isoformat()" in generic
