"""The Kafka sink's delivery bookkeeping, driven by delivery reports as librdkafka makes them
(the producer itself never connects: tests/integration/test_outage.py runs the same paths against
a broker)."""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import KafkaError, Message

from service.availability import Brokers
from service.config import load_settings
from service.metrics import Metrics
from service.routing import Source
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
