"""The Kafka sink's delivery bookkeeping, driven by delivery reports as librdkafka makes them
(the producer itself never connects: tests/integration/test_outage.py runs the same paths against
a broker)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import fastavro
import numpy as np
import pytest
import structlog
from confluent_kafka import KafkaError, Message

from service import __version__
from service.config import load_settings
from service.exceptions import BrokersUnavailableError, InputError
from service.io.sinks import kafka as kafka_sink
from service.io.sinks.envelope import (
    HEADERS_BYTES_LIMIT,
    HEADERS_COUNT_LIMIT,
    bounded_headers,
    dead_letter_headers,
)
from service.io.sinks.kafka import KafkaSink, _BatchOutputs
from service.ops.availability import Brokers
from service.ops.metrics import Metrics
from service.records import Headers, Input, Lineage, Row, ScoredBatch

UNUSED = "127.0.0.1:1"


def report(key: bytes, error: KafkaError | None = None) -> Message:
    return Message(topic="scores", partition=0, key=key, value=b"score of " + key, error=error)


def batch_of(sink: KafkaSink, sources: list[Lineage], keys: list[bytes]) -> _BatchOutputs:
    """A batch's scores as the sink produced them: keyed ``keys``, valued as :func:`report`."""
    values = [b"score of " + key for key in keys]
    return _BatchOutputs(sink, list[Lineage | None](sources), keys, values)


def counted(metrics: Metrics, name: str, **labels: str) -> float | None:
    """The value of counter ``alert_anomaly_<name>_total`` with ``labels``, as scraped."""
    return metrics.registry.get_sample_value(f"alert_anomaly_{name}_total", labels)


def test_a_batch_is_written_together_and_a_failed_score_leaves_it() -> None:
    settings = load_settings(
        None, {"kafka": {"bootstrap_servers": UNUSED}, "output": {"topic": "scores"}}
    )
    written: list[list[Lineage]] = []

    def on_written(sources: Sequence[Lineage]) -> None:
        written.append(list(sources))

    metrics = Metrics()
    sink = KafkaSink(settings, metrics, on_written, Brokers(UNUSED, 60.0))
    sources = [Lineage("alerts", 0, offset, None) for offset in range(3)]
    batch = batch_of(sink, sources, [b"a", b"b", b"c"])
    sink._in_flight = 3  # as if write() had queued them
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)

    batch.delivered(None, report(b"a"))
    batch.delivered(timed_out, report(b"b", timed_out))
    assert written == []  # the batch waits for its last score
    batch.delivered(None, report(b"c"))
    assert written == [[sources[0], sources[2]]]
    assert sum(map(len, written)) == 2
    assert counted(metrics, "delivery_failures", topic="scores") == 1
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
    written: list[Sequence[Lineage]] = []
    metrics = Metrics()
    sink = KafkaSink(settings, metrics, written.append, Brokers(UNUSED, 60.0))
    batch = batch_of(sink, [Lineage("alerts", 0, 0, None)], [b"a"])
    sink._in_flight = 1
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    batch.delivered(too_large, report(b"a", too_large))
    assert written == []
    # a permanent error: a reference dead letter stands for it
    assert counted(metrics, "dead_letters", reason="oversized") == 1
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
    keys = [b"a", b"b", b"c"]
    batch = batch_of(sink, [Lineage("alerts", 0, offset, None) for offset in range(3)], keys)
    sink._in_flight = 3
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    with structlog.testing.capture_logs() as logs:
        for key in keys:
            batch.delivered(timed_out, report(key, timed_out))
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
        Row(Lineage("alerts", 0, i, None), f"ZTF{i:04d}" + "x" * size, 1.0, np.zeros(1), 1.0)
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
        "explanation": (),
        "reranked_percentile": None,
        "reranker_expert": None,
        "reranker_version": None,
        "reranker_checksum": None,
    }
    zeros = np.zeros(n, np.float32)
    return ScoredBatch("Transient", columns, zeros, zeros, 0.0), rows


def small_queue_sink(messages: int) -> KafkaSink:
    """A sink whose local queue holds ``messages``; what is queued times out after 0.3 s."""
    producer = {"queue.buffering.max.messages": str(messages), "message.timeout.ms": "300"}
    settings = load_settings(
        None,
        {
            "kafka": {"bootstrap_servers": UNUSED, "producer": producer},
            "output": {"topic": "scores"},
        },
    )
    return KafkaSink(settings, Metrics(), lambda sources: None, Brokers(UNUSED, 60.0))


def test_a_full_local_queue_waits_and_a_refused_score_is_replaced() -> None:
    sink = small_queue_sink(2)
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
    metrics = Metrics()
    sink = KafkaSink(small, metrics, lambda sources: None, Brokers(UNUSED, 60.0))
    batch, rows = scored(3, 2000)  # larger than the producer takes: refused at once
    sink.write(batch, rows)
    # each stands as a reference dead letter
    assert counted(metrics, "dead_letters", reason="oversized") == 3
    assert sink.in_flight() == 3  # the references, queued
    sink.close(0)


def sent_by(sink: KafkaSink, monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """What the sink hands the producer (topic, key, value, headers), recorded."""
    sent: list[tuple] = []
    send = sink._send

    def recording(topic, key, value, headers, delivered):  # type: ignore[no-untyped-def]
        sent.append((topic, key, value, headers))
        return send(topic, key, value, headers, delivered)

    monkeypatch.setattr(sink, "_send", recording)
    return sent


def test_a_reference_bounds_the_key_and_headers_and_carries_every_dead_letter_header(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(None, {"kafka": {"bootstrap_servers": UNUSED}})
    sink = KafkaSink(settings, Metrics(), lambda sources: None, Brokers(UNUSED, 60.0))
    sent = sent_by(sink, monkeypatch)
    key = b"k" * 5_000_000  # larger than the producer takes (message.max.bytes 1,000,000)
    many = [(f"h{i}", b"x" * 100) for i in range(5000)]
    source = Lineage("alerts", 3, 17, 1234)
    sink.dead_letter(Input(source, key, b"value", many), InputError("undecodable", "bad bytes"))
    (_, first_key, _, first_headers), (topic, ref_key, value, headers) = sent
    assert first_key == key
    assert first_headers[-5000:] == many
    assert topic == settings.output.dead_letter_topic
    assert ref_key == f"sha256:{hashlib.sha256(key).hexdigest()}".encode()
    named = dict(headers)
    assert named["alert_anomaly.original_key_size"] == b"5000000"
    assert named["alert_anomaly.original_key_sha256"] == hashlib.sha256(key).hexdigest().encode()
    # every header the other dead letters carry, with the reason of the reference
    ordinary = dict(dead_letter_headers(source, InputError("oversized", "x"), None))
    assert set(ordinary) <= set(named)
    assert named["alert_anomaly.error"] == b"oversized"
    assert named["alert_anomaly.service_version"] == __version__.encode()
    assert named["alert_anomaly.source_offset"] == b"17"
    assert named["alert_anomaly.original_error"] == b"undecodable"
    # the input's headers within bounds, and what was left out
    kept = [(n, v) for n, v in headers if n.startswith("h")]
    assert kept == many[: len(kept)]
    assert 0 < len(kept) <= HEADERS_COUNT_LIMIT
    assert sum(len(n) + len(v) for n, v in kept) <= HEADERS_BYTES_LIMIT
    assert named["alert_anomaly.original_headers_count"] == b"5000"
    assert int(named["alert_anomaly.original_headers_dropped"]) == 5000 - len(kept)
    assert json.loads(value)["source_offset"] == 17
    assert sink.in_flight() == 1  # the reference, queued
    sink.close(0)


def test_a_reference_refused_for_good_is_dropped_and_its_input_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No retry can write it: counted, logged and its input let through (committed), instead of
    being retried forever with its partition blocked behind it."""
    settings = load_settings(
        None, {"kafka": {"bootstrap_servers": UNUSED, "producer": {"message.max.bytes": "1000"}}}
    )
    written: list[Lineage] = []
    metrics = Metrics()
    sink = KafkaSink(settings, metrics, written.extend, Brokers(UNUSED, 60.0))
    source = Lineage("alerts", 0, 5, None)
    headers = [(f"h{i}", b"x" * 200) for i in range(40)]  # kept in the reference: over 1000 B
    with structlog.testing.capture_logs() as logs:
        sink.dead_letter(Input(source, b"k", b"v" * 2000, headers), InputError("undecodable", "b"))
    assert written == [source]
    assert sink.in_flight() == 0
    assert not sink._retries
    [dropped] = [e for e in logs if e["event"] == "output_dropped"]
    assert dropped["source_offset"] == 5
    count = metrics.registry.get_sample_value(
        "alert_anomaly_outputs_dropped_total",
        {"topic": settings.output.dead_letter_topic, "reason": "oversized"},
    )
    assert count == 1.0
    sink.close(0)


def test_bounded_headers_keep_small_sets_whole() -> None:
    few: Headers = [("a", b"1"), ("b", None), ("c", "text")]
    assert bounded_headers(few) == few
    assert bounded_headers(None) == []
    big: Headers = [("big", b"x" * (HEADERS_BYTES_LIMIT + 1)), ("small", b"1")]
    named = dict(bounded_headers(big))
    assert "big" not in named
    assert "small" not in named
    assert named["alert_anomaly.original_headers_dropped"] == b"2"


def test_a_refused_score_is_replaced_by_a_reference_with_its_inputs_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(None, {"kafka": {"bootstrap_servers": UNUSED}})
    sink = KafkaSink(settings, Metrics(), lambda sources: None, Brokers(UNUSED, 60.0))
    sent = sent_by(sink, monkeypatch)
    batch, rows = scored(2, 10)
    rows[1] = rows[1]._replace(oid="Z" * 2_000_000, headers=[("trace", b"abc")])
    batch.columns["oid"] = [r.oid for r in rows]
    sink.write(batch, rows)  # the second score is larger than the producer takes
    [(topic, key, _, headers)] = [s for s in sent if s[3] is not None]
    named = dict(headers)
    assert topic == settings.output.dead_letter_topic
    assert named["alert_anomaly.original_output"] == b"score"
    assert named["alert_anomaly.original_key_size"] == b"2000000"
    assert len(key) < 100
    assert named["trace"] == b"abc"  # the input's own headers, as on every dead letter
    assert named["alert_anomaly.service_version"] == __version__.encode()
    sink.close(0)


def test_a_full_queue_in_an_outage_ticks_liveness_and_gives_up_in_time() -> None:
    """The local queue full because no broker answers: write() waits (backpressure) but keeps
    liveness ticking and gives up after kafka.unavailable_timeout_s instead of blocking."""
    now = [0.0]
    brokers = Brokers(UNUSED, 30.0, clock=lambda: now[0])
    ticks = []

    def tick() -> None:  # each wait slice: 10 s pass
        ticks.append(now[0])
        now[0] += 10.0

    brokers.heartbeat = tick
    brokers.answered()  # it had answered: an outage, not a wrong address
    brokers.error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    settings = load_settings(
        None,
        {
            "kafka": {
                "bootstrap_servers": UNUSED,
                "producer": {"queue.buffering.max.messages": "1"},
            },
            "output": {"topic": "scores"},
        },
    )
    sink = KafkaSink(settings, Metrics(), lambda sources: None, brokers)
    batch, rows = scored(3, 10)
    with pytest.raises(BrokersUnavailableError):
        sink.write(batch, rows)
    assert ticks == [0.0, 10.0, 20.0]
    sink.close(0)


class FakeProducer:
    """Records what is produced with its delivery callback; the test makes the reports."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, Headers | None, Any]] = []
        self.acknowledged: list[tuple[str, bytes | None]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Headers | None = None,
        on_delivery: Any = None,
    ) -> None:
        self.sent.append((topic, key, value, headers, on_delivery))

    def produce_batch(
        self, topic: str, messages: list[dict[str, Any]], on_delivery: Any = None
    ) -> int:
        for m in messages:
            self.produce(topic, m["value"], m["key"], on_delivery=on_delivery)
        return len(messages)

    def report(self, index: int, error: KafkaError | None = None) -> None:
        topic, key, value, _, delivered = self.sent[index]
        if error is None:
            self.acknowledged.append((topic, key))
        delivered(error, Message(topic=topic, partition=0, key=key, value=value, error=error))

    def poll(self, timeout_s: float = 0) -> int:
        return 0

    def flush(self, timeout_s: float = 0) -> int:
        return 0

    def purge(self) -> None:
        """Nothing is queued for real."""


def test_outputs_in_flight_at_the_change_hour_keep_their_day_s_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Daily topics by an injected clock: a batch before 22:00 UTC goes to today's topic, one
    from 22:00 on to tomorrow's; a retry or a reference produced after the switch keeps the
    topics of its output's first production, and every input is written once."""
    settings = load_settings(
        None,
        {
            "kafka": {"bootstrap_servers": UNUSED},
            "output": {
                "topic_strategy": "daily",
                "topic_format": "scores_%s",
                "dead_letter_topic_format": "dlq_%s",
            },
        },
    )
    written: list[Lineage] = []
    now = [datetime(2026, 12, 31, 21, 59, 59, tzinfo=UTC)]
    reads: list[datetime] = []

    def clock() -> datetime:
        reads.append(now[0])
        return now[0]

    sink = KafkaSink(settings, Metrics(), written.extend, Brokers(UNUSED, 60.0), clock=clock)
    producer = FakeProducer()
    sink.producer = producer
    monkeypatch.setattr(kafka_sink, "RETRY_BACKOFF_S", (0.0,))

    before, before_rows = scored(3, 10)
    sink.write(before, before_rows)
    assert len(reads) == 1  # the clock is read once per batch, not per score
    bad = [Input(Lineage("alerts", 1, offset, None), b"k", b"bad", None) for offset in (7, 8)]
    sink.dead_letter(bad[0], InputError("undecodable", "bad bytes"))
    now[0] = datetime(2026, 12, 31, 22, 0, tzinfo=UTC)  # the change hour, at a year's end
    after, after_rows = scored(2, 10)
    after_rows = [
        r._replace(source=Lineage("alerts", 0, 10 + i, None), oid=f"ZTF9{i}")
        for i, r in enumerate(after_rows)
    ]
    after.columns["oid"] = [r.oid for r in after_rows]
    sink.write(after, after_rows)
    sink.dead_letter(bad[1], InputError("undecodable", "bad bytes"))
    today, tomorrow = "20261231", "20270101"
    assert [s[0] for s in producer.sent] == [
        *[f"scores_{today}"] * 3,
        f"dlq_{today}",
        *[f"scores_{tomorrow}"] * 2,
        f"dlq_{tomorrow}",
    ]

    # after the switch, of what was produced before it: a score times out (retried), another
    # is too large (replaced by a reference), the dead letter times out (retried)
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    producer.report(0)
    producer.report(1, timed_out)
    producer.report(2, too_large)
    producer.report(3, timed_out)
    for i in (4, 5, 6):
        producer.report(i)
    sink.poll(0)  # the retries, produced again
    assert [s[0] for s in producer.sent[7:]] == [f"dlq_{today}", f"scores_{today}", f"dlq_{today}"]
    reference = dict(producer.sent[7][3] or [])
    assert reference["alert_anomaly.original_topic"] == f"scores_{today}".encode()
    for i in range(7, len(producer.sent)):
        producer.report(i)

    assert sink.in_flight() == 0
    # every input written once: none lost, none twice
    inputs = [r.source for r in before_rows + after_rows] + [b.source for b in bad]
    assert sorted(written) == sorted(inputs)
    # each output acknowledged once, in the topics of its first production
    day_of = {r.oid.encode(): today for r in before_rows} | {
        r.oid.encode(): tomorrow for r in after_rows
    }
    scores = [(t, k) for t, k in producer.acknowledged if t.startswith("scores_")]
    refused = before_rows[2].oid.encode()
    assert sorted(scores) == sorted((f"scores_{d}", k) for k, d in day_of.items() if k != refused)
    dead = sorted(t for t, _ in producer.acknowledged if t.startswith("dlq_"))
    assert dead == [f"dlq_{today}", f"dlq_{today}", f"dlq_{tomorrow}"]  # the reference, 2 inputs
    sink.close(0)


def test_scribe_commands_are_outputs_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """With output.scribe_topic a scored row has two outputs (its score, then its scribe
    command), each acknowledged, retried or replaced on its own: a row's input is reported
    written once per output (the engine waits for outputs_per_row of them before committing);
    a dead letter makes no command; a command refused for good is replaced by a reference that
    says it was a scribe command."""
    settings = load_settings(
        None,
        {
            "kafka": {"bootstrap_servers": UNUSED},
            "output": {"topic": "scores", "scribe_topic": "scribe", "detector_name": "ours"},
        },
    )
    written: list[Lineage] = []
    sink = KafkaSink(settings, Metrics(), written.extend, Brokers(UNUSED, 60.0))
    assert sink.outputs_per_row == 2
    producer = FakeProducer()
    sink.producer = producer
    monkeypatch.setattr(kafka_sink, "RETRY_BACKOFF_S", (0.0,))
    batch, rows = scored(3, 10)
    sink.write(batch, rows)
    sink.dead_letter(
        Input(Lineage("alerts", 1, 9, None), b"k", b"bad", None), InputError("undecodable", "x")
    )
    assert [(s[0], s[1]) for s in producer.sent] == [
        *[("scores", r.oid.encode()) for r in rows],
        *[("scribe", r.oid.encode()) for r in rows],
        ("anomaly-scores-dlq", b"k"),
    ]
    scribe_message = fastavro.parse_schema(
        {
            "type": "record",
            "name": "scribe_message",
            "fields": [{"name": "payload", "type": "string"}],
        }
    )
    commands = [
        json.loads(
            fastavro.schemaless_reader(io.BytesIO(s[2] or b""), scribe_message, None)["payload"]
        )  # type: ignore[call-overload, index]
        for s in producer.sent[3:6]
    ]
    assert [c["criteria"]["_id"] for c in commands] == [r.oid for r in rows]
    assert {c["data"]["detector_name"] for c in commands} == {"ours_top"}

    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    for i in range(3):
        producer.report(i)  # the scores
    assert written == [r.source for r in rows]  # one output of two for each row
    producer.report(3)
    producer.report(4, timed_out)
    producer.report(5, too_large)
    producer.report(6)  # the dead letter
    dead = Lineage("alerts", 1, 9, None)
    # the commands' batch reports its acknowledged one when its last output is settled
    assert written == [r.source for r in rows] + [rows[0].source, dead]
    sink.poll(0)  # the timed-out command again (the refused one's reference went at once)
    reference, retry = producer.sent[7:9]
    assert (retry[0], retry[1], retry[2]) == producer.sent[4][:3]
    assert reference[0] == "anomaly-scores-dlq"
    assert dict(reference[3] or [])["alert_anomaly.original_output"] == b"scribe_command"
    producer.report(7)
    producer.report(8)
    assert sorted(written[5:]) == sorted([rows[1].source, rows[2].source])
    assert sorted(written) == sorted([dead] + [r.source for r in rows] * 2)  # two per row
    assert sink.in_flight() == 0
    sink.close(0)


def scribe_sink(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[KafkaSink, FakeProducer, Metrics, list[Lineage]]:
    """A sink writing scores and scribe commands to a fake producer; the inputs it reports."""
    settings = load_settings(
        None,
        {
            "kafka": {"bootstrap_servers": UNUSED},
            "output": {"topic": "scores", "scribe_topic": "scribe", "detector_name": "ours"},
        },
    )
    metrics, written = Metrics(), list[Lineage]()
    sink = KafkaSink(settings, metrics, written.extend, Brokers(UNUSED, 60.0))
    producer = FakeProducer()
    sink.producer = producer
    monkeypatch.setattr(kafka_sink, "RETRY_BACKOFF_S", (0.0,))
    return sink, producer, metrics, written


def command_of(value: bytes | None) -> Any:
    """A scribe message's command (schemaless Avro ``scribe_message``, JSON payload)."""
    record = fastavro.schemaless_reader(io.BytesIO(value or b""), SCRIBE_MESSAGE, None)
    return json.loads(record["payload"])  # type: ignore[call-overload, index]


SCRIBE_MESSAGE = fastavro.parse_schema(
    {"type": "record", "name": "scribe_message", "fields": [{"name": "payload", "type": "string"}]}
)


def test_one_scribe_command_per_object_and_batch_the_latest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two rows of one object in a batch: both scores, but one scribe command - the later
    row's, in its place (their writer fails a batch of commands with two rows of one key,
    tests/integration/test_alerce_scribe_postgres.py); the earlier row's input is reported
    written for that output when the batch's commands are, also when the later command failed
    and is retried on its own; the left-out command is counted."""
    sink, producer, metrics, written = scribe_sink(monkeypatch)
    batch, rows = scored(4, 1)
    rows[2] = rows[2]._replace(oid=rows[0].oid)  # objects a, b, a, d
    batch.columns["oid"] = [r.oid for r in rows]
    batch.columns["score"] = [0.1, 0.2, 0.3, 0.4]
    sink.write(batch, rows)
    scribe = [s for s in producer.sent if s[0] == "scribe"]
    commands = [command_of(s[2]) for s in scribe]
    assert [c["criteria"]["_id"] for c in commands] == [rows[i].oid for i in (1, 2, 3)]
    assert [c["data"]["categories"][0]["score"] for c in commands] == [0.2, 0.3, 0.4]
    assert [s[1] for s in producer.sent if s[0] == "scores"] == [r.oid.encode() for r in rows]
    assert counted(metrics, "outputs_superseded", topic="scribe") == 1
    for i in range(4):
        producer.report(i)  # the scores
    assert sorted(written) == sorted(r.source for r in rows)
    written.clear()
    producer.report(4)
    producer.report(5, KafkaError(KafkaError._MSG_TIMED_OUT))  # the command that stands for two
    producer.report(6)
    # the batch is settled: its written commands and the row the failed one stands for
    assert sorted(written) == sorted([rows[0].source, rows[1].source, rows[3].source])
    sink.poll(0)
    producer.report(7)  # the failed command again: the later row's own input
    assert sorted(written) == sorted(r.source for r in rows)
    assert sink.in_flight() == 0
    sink.close(0)


def test_a_batch_of_distinct_objects_has_a_command_each(monkeypatch: pytest.MonkeyPatch) -> None:
    sink, producer, metrics, _ = scribe_sink(monkeypatch)
    batch, rows = scored(3, 1)
    sink.write(batch, rows)
    assert [s[1] for s in producer.sent if s[0] == "scribe"] == [r.oid.encode() for r in rows]
    assert counted(metrics, "outputs_superseded", topic="scribe") is None
    sink.close(0)


def test_scribe_commands_need_a_kafka_sink() -> None:
    with pytest.raises(Exception, match="scribe_topic is for kind kafka"):
        load_settings(None, {"output": {"kind": "memory", "scribe_topic": "scribe"}})


class FencedProducer(FakeProducer):
    """A producer whose purge fails what it still holds, as librdkafka reports a purge."""

    def __init__(self) -> None:
        super().__init__()
        self.reported: set[int] = set()

    def produce_batch(
        self, topic: str, messages: list[dict[str, Any]], on_delivery: Any = None
    ) -> int:
        for m in messages:
            self.produce(topic, m["value"], m["key"], on_delivery=on_delivery)
        return len(messages)

    def report(self, index: int, error: KafkaError | None = None) -> None:
        self.reported.add(index)
        super().report(index, error)

    def purge(self) -> None:
        for i in range(len(self.sent)):
            if i not in self.reported:
                self.report(i, KafkaError(KafkaError._PURGE_QUEUE))


def test_a_fenced_producer_is_replaced_and_its_outputs_written_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A broker fences the producer (its retries would fail forever): at the next poll what it
    still holds is purged into the retries and a new producer writes them; every input is
    reported written once."""
    settings = load_settings(
        None, {"kafka": {"bootstrap_servers": UNUSED}, "output": {"topic": "scores"}}
    )
    written: list[Lineage] = []
    metrics = Metrics()
    sink = KafkaSink(settings, metrics, written.extend, Brokers(UNUSED, 60.0))
    first, second = FencedProducer(), FencedProducer()
    sink.producer = first
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(kafka_sink, "new_client", lambda _, config: made.append(config) or second)
    monkeypatch.setattr(kafka_sink, "RETRY_BACKOFF_S", (0.0,))
    batch, rows = scored(3, 10)
    sink.write(batch, rows)
    first.report(0)
    first.report(1, KafkaError(KafkaError.PRODUCER_FENCED))
    sink.poll(0)
    assert sink.producer is second
    assert len(made) == 1
    assert sorted(key for _, key, *_ in second.sent) == sorted(r.oid.encode() for r in rows[1:])
    for i in range(len(second.sent)):
        second.report(i)
    sink.poll(0)
    assert sink.producer is second  # no second renewal
    assert counted(metrics, "producer_renewals") == 1
    assert sorted(written) == sorted(r.source for r in rows)
    assert sink.in_flight() == 0
    sink.close(0)


def test_a_failure_is_told_apart_among_outputs_of_one_object() -> None:
    """One delivery callback serves a batch: a failure report finds its output by key and
    value - the same object's two scores are two outputs, and two outputs alike in both are
    interchangeable (each input still gets one written output)."""
    settings = load_settings(None, {"kafka": {"bootstrap_servers": UNUSED}})
    written: list[Lineage] = []
    sink = KafkaSink(settings, Metrics(), written.extend, Brokers(UNUSED, 60.0))
    sources = [Lineage("alerts", 0, offset, None) for offset in range(4)]
    keys = [b"ZTF1", b"ZTF1", b"ZTF2", b"ZTF2"]
    values = [b"first", b"second", b"same", b"same"]
    batch = _BatchOutputs(sink, list[Lineage | None](sources), keys, values)
    sink._in_flight = 4
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)

    def message(i: int, error: KafkaError | None) -> Message:
        return Message(topic="s", partition=0, key=keys[i], value=values[i], error=error)

    batch.delivered(timed_out, message(1, timed_out))
    batch.delivered(timed_out, message(3, timed_out))
    batch.delivered(None, message(0, None))
    batch.delivered(None, message(2, None))
    retried = sorted((r.source.offset, r.value) for r in sink._retries)
    assert retried == [(1, b"second"), (2, b"same")]  # 2 and 3 are alike: either stands
    assert sorted(s.offset for s in written) == [0, 3]
    with pytest.raises(AssertionError, match="no output of the batch"):
        batch.index_of(b"ZTF3", b"other")
    sink.close(0)


def test_outputs_are_produced_in_one_call_and_a_full_queue_keeps_their_order() -> None:
    """The batch goes to librdkafka in one call; what its full local queue turns away is
    produced one by one, in row order, once there is room."""
    sink = small_queue_sink(3)
    calls: list[int] = []
    sent: list[bytes] = []
    producer, send = sink.producer, sink._send

    class Recording:
        def produce_batch(self, topic: str, messages: list[dict[str, Any]], **kw: Any) -> int:
            calls.append(len(messages))
            queued = producer.produce_batch(topic, messages, **kw)
            sent.extend(m["key"] for m in messages if "_error" not in m)
            return queued

        def __getattr__(self, name: str) -> Any:
            return getattr(producer, name)

    sink.producer = Recording()  # type: ignore[assignment]

    def recording(topic, key, value, headers, delivered):  # type: ignore[no-untyped-def]
        sent.append(key)
        return send(topic, key, value, headers, delivered)

    sink._send = recording  # type: ignore[method-assign]
    batch, rows = scored(8, 10)
    sink.write(batch, rows)
    assert calls == [8]
    assert sent == [row.oid.encode() for row in rows]  # 3 at once, then 5 in order
    assert sink.in_flight() == 8
    sink.producer = producer
    sink.close(0)
