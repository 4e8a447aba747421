"""The Kafka sink's delivery bookkeeping, driven by delivery reports as librdkafka makes them
(the producer itself never connects: tests/integration/test_outage.py runs the same paths against
a broker)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import structlog
from confluent_kafka import KafkaError, Message

from service.availability import Brokers
from service.config import load_settings
from service.metrics import Metrics
from service.processing import ScoredBatch
from service.routing import Row, Source
from service.sinks import kafka as kafka_sink
from service.sinks.kafka import KafkaSink, _ScoreBatch

UNUSED = "127.0.0.1:1"


def report(key: bytes, error: KafkaError | None = None) -> Message:
    return Message(topic="scores", partition=0, key=key, value=b"score of " + key, error=error)


def test_a_batch_is_written_together_and_a_failed_score_leaves_it() -> None:
    settings = load_settings(
        None, {"kafka": {"bootstrap_servers": UNUSED}, "output": {"topic": "scores"}}
    )
    written: list[list[Source]] = []

    def on_written(sources: Sequence[Source]) -> None:
        written.append(list(sources))

    sink = KafkaSink(settings, Metrics(), on_written, Brokers(UNUSED, 60.0))
    sources = [Source("alerts", 0, offset, None) for offset in range(3)]
    batch = _ScoreBatch(sink, list(sources))
    sink._in_flight = 3  # as if write() had queued them
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)

    batch.delivered(0, None, report(b"a"))
    batch.delivered(1, timed_out, report(b"b", timed_out))
    assert written == []  # the batch waits for its last score
    batch.delivered(2, None, report(b"c"))
    assert written == [[sources[0], sources[2]]]
    assert sink.acknowledged == 2
    assert sink.failures == 1
    assert sink.in_flight() == 1  # the failed score, queued to be produced again on its own
    retry = sink._retries[0]
    assert (retry.source, retry.key, retry.value, retry.what) == (
        sources[1],
        b"b",
        b"score of b",
        "score",
    )
    sink.close(0)


def test_a_batch_whose_every_score_failed_reports_nothing() -> None:
    settings = load_settings(None, {"kafka": {"bootstrap_servers": UNUSED}})
    written: list[Sequence[Source]] = []
    sink = KafkaSink(settings, Metrics(), written.append, Brokers(UNUSED, 60.0))
    batch = _ScoreBatch(sink, [Source("alerts", 0, 0, None)])
    sink._in_flight = 1
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    batch.delivered(0, too_large, report(b"a", too_large))
    assert written == []
    assert sink.replaced == 1  # a permanent error: a reference dead letter stands for it
    sink.close(0)


def test_an_outage_is_one_line_per_kind_of_failure_then_a_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every output in flight fails in an outage: the first failure of a kind is logged with its
    input, the others are counted into a periodic summary line."""
    settings = load_settings(
        None, {"kafka": {"bootstrap_servers": UNUSED}, "output": {"topic": "scores"}}
    )
    sink = KafkaSink(settings, Metrics(), lambda sources: None, Brokers(UNUSED, 60.0))
    batch = _ScoreBatch(sink, [Source("alerts", 0, offset, None) for offset in range(3)])
    sink._in_flight = 3
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    with structlog.testing.capture_logs() as logs:
        for i, key in enumerate((b"a", b"b", b"c")):
            batch.delivered(i, timed_out, report(key, timed_out))
        sink.poll(0)  # within the summary interval: nothing more
        monkeypatch.setattr(kafka_sink, "SUMMARY_EVERY_S", 0.0)
        sink.poll(0)
    events = [e for e in logs if e["event"].startswith("delivery_failed")]
    assert [(e["event"], e["source_offset"]) for e in events] == [("delivery_failed", 0)]
    [summary] = [e for e in logs if e["event"] == "delivery_failures"]
    assert summary["failures"] == {"scores: _MSG_TIMED_OUT": 3}
    assert summary["retrying"] == 3
    sink.close(0)


def scored(n: int, size: int) -> tuple[ScoredBatch, list[Row]]:
    """A batch of ``n`` scores whose encoded values are about ``size`` bytes."""
    rows = [
        Row(Source("alerts", 0, i, None), f"ZTF{i:04d}" + "x" * size, 1.0, np.zeros(1), 1.0)
        for i in range(n)
    ]
    columns = {
        "oid": [r.oid for r in rows],
        "survey": "ztf",
        "top_class": "Transient",
        "top_class_probability": [1.0] * n,
        "scorer": "mcdsvdd",
        "score": [0.5] * n,
        "percentile": [50.0] * n,
        "nearest_subclass": None,
        "model_version": "1",
        "model_checksum": "c",
        "scored_at": 0,
        "source_topic": "alerts",
        "source_partition": [0] * n,
        "source_offset": list(range(n)),
        "source_timestamp": [None] * n,
        "service_version": "0",
        "feature_coverage": [1.0] * n,
    }
    return ScoredBatch(columns, np.zeros(n, np.float32), np.zeros(n, np.float32), 0.0), rows


def test_a_full_local_queue_waits_and_a_refused_score_is_replaced() -> None:
    settings = load_settings(
        None,
        {
            "kafka": {
                "bootstrap_servers": UNUSED,
                # two messages fit the local queue; what is queued times out after 0.3 s
                "producer": {"queue.buffering.max.messages": "2", "message.timeout.ms": "300"},
            },
            "output": {"topic": "scores"},
        },
    )
    sink = KafkaSink(settings, Metrics(), lambda sources: None, Brokers(UNUSED, 60.0))
    batch, rows = scored(5, 10)
    sink.write(batch, rows)  # returns once every score is queued or failed
    assert sink.in_flight() == 5  # none lost on the way: queued, or failed and to be retried
    assert len(sink._retries) >= 3  # the queue had room for two: the others waited for timeouts
    sink.close(0)

    small = load_settings(
        None,
        {
            "kafka": {"bootstrap_servers": UNUSED, "producer": {"message.max.bytes": "1000"}},
            "output": {"topic": "scores"},
        },
    )
    sink = KafkaSink(small, Metrics(), lambda sources: None, Brokers(UNUSED, 60.0))
    batch, rows = scored(3, 2000)  # larger than the producer takes: refused at once
    sink.write(batch, rows)
    assert sink.replaced == 3  # each stands as a reference dead letter
    assert sink.in_flight() == 3  # the references, queued
    sink.close(0)
