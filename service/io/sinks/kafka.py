"""Scores and dead letters to Kafka topics, written at least once; with ALeRCE's outputs on,
also a scribe command per object of a batch (``output.scribe_topic``: an output of its own,
retried and acknowledged like a score, so that an input is committed only when both are written;
an input whose object has a later row in the batch is committed with that row's command) and step
metrics per batch (``output.metrics_topic``: sent once, as their framework sends them). What each
output is, is one class of :mod:`service.io.sinks.outputs`; this module writes them.

Every output is produced with a delivery callback; acknowledged ones are reported to the engine
(``on_written``), which commits an input's offset only when all its outputs are. A batch's scores
are reported together when the last of them is acknowledged (one call per batch, not per score:
the service's throughput depends on it); a score that fails leaves its batch and is handled on its
own. Failures are told apart:

* transient (the broker is down or slow, a leader moves, a timeout): the output is produced again
  with backoff, for as long as it takes - a broker outage loses nothing. The first failure of a
  kind (topic and error) is logged with its input; the others are counted and summarised every
  :data:`SUMMARY_EVERY_S` (an outage fails every output in flight: one line each would be
  thousands);
* permanent for this message (too large for the producer or the topic, a record or policy the
  broker rejects): retrying cannot help, and an input must not stop the service. The output is
  replaced by a small dead letter that refers to it - reason ``oversized`` or ``rejected``
  (:data:`OUTPUT_REASONS`), the headers every dead letter carries, what the output was and the
  input's key and headers within bounds (:func:`service.io.sinks.envelope.reference`) - and that
  one is written instead. Should the reference too be refused for good (a topic limit below a
  few kilobytes), the output is dropped: logged (``output_dropped``), counted
  (``alert_anomaly_outputs_dropped_total``) and its input committed, so that no input can block
  its partition.

A producer the broker has fenced (``PRODUCER_FENCED``, ``INVALID_PRODUCER_EPOCH``, or any error
librdkafka calls fatal) can never write again: its failed outputs are retried as above, and at
the next poll it is replaced by a new producer (a new producer id) after what it still holds is
purged into the retries (``producer_renewed``; an output it wrote before the fence may then be
written twice, never lost).

Topics are fixed or daily (``output.topic_strategy``, :mod:`service.io.topics`). The clock is read
once per batch (and per dead letter), and an output keeps the topics of the moment it was first
produced: its retries go to the same topic and the reference that stands for it to the dead-letter
topic of that moment, so that nothing in flight at a change of day is lost or written twice.

Over 300 lines on purpose: one class whose delivery callback, retries, replacement and batch
bookkeeping share the per-output state of the service's hot path (every score passes here);
what a dead letter carries is built apart (:mod:`service.io.sinks.envelope`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from service.config import Settings
from service.config.streams import topic_strategy
from service.exceptions import DeadLetterReason, InputError
from service.io.kafka import new_client, producer_config
from service.io.sinks import envelope
from service.io.sinks.outputs import RowOutput, StepMetrics, topic_outputs
from service.io.topics import Clock, CurrentTopics, Topics, utc_now
from service.ops.availability import SUMMARY_EVERY_S, Brokers
from service.ops.metrics import Metrics
from service.records import Headers, Input, Lineage, Row, ScoredBatch, Written

log = structlog.get_logger(__name__)

RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# errors that no retry of the same message can fix, by the reason of the reference that stands
# for the output: too large for the producer or the topic, or rejected by the broker
OUTPUT_REASONS: dict[DeadLetterReason, frozenset[int]] = {
    "oversized": frozenset(
        {
            KafkaError.MSG_SIZE_TOO_LARGE,
            KafkaError.RECORD_LIST_TOO_LARGE,
            KafkaError.INVALID_MSG_SIZE,
        }
    ),
    "rejected": frozenset(
        {
            KafkaError.INVALID_RECORD,
            KafkaError.INVALID_MSG,
            KafkaError.POLICY_VIOLATION,
            KafkaError.INVALID_TIMESTAMP,
        }
    ),
}
_PERMANENT = {code: reason for reason, codes in OUTPUT_REASONS.items() for code in codes}
# errors after which this producer can never write: a new one must take over
_FENCED = frozenset(
    {KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH, KafkaError._FENCED}
)


@dataclass(frozen=True)
class _Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    source: Lineage
    what: str  # "score", or the reason of a dead letter
    dead_letter_topic: str  # where a reference to it goes: the one of its first production
    input_headers: Headers | None = None  # the input's own (a reference keeps them)
    replacement: bool = False  # the reference that stands for an unwritable output
    attempt: int = 0
    not_before: float = 0.0


class _BatchOutputs:
    """One kind of output of a batch (its scores, or its scribe commands), one per row, until
    all are acknowledged; :meth:`delivered` is the delivery callback of each. The topics are
    those of the moment the batch is first produced."""

    __slots__ = (
        "_by_key",
        "covered",
        "dead_letters",
        "keys",
        "left",
        "rows",
        "sink",
        "sources",
        "topic",
        "values",
        "what",
    )

    def __init__(
        self,
        sink: KafkaSink,
        sources: list[Lineage | None],
        keys: list[bytes],
        values: list[bytes],
        rows: list[Row] | None = None,
        topics: Topics | None = None,
        *,
        topic: str | None = None,
        what: str = "score",
        covered: list[Lineage] | None = None,
    ) -> None:
        """``topic``: where these outputs go (default: the score topic of ``topics``);
        ``covered``: the inputs of rows left out (a later row's output stands for theirs),
        acknowledged with the batch."""
        self.sink = sink
        self.sources = sources  # None: produced on its own after a failure
        self.keys, self.values = keys, values
        self.rows = rows  # the scored rows (their inputs' headers, for a reference)
        topics = topics or sink.topics()
        self.topic = topic or topics.scores
        self.dead_letters = topics.dead_letters
        self.what = what
        self.covered = covered or []
        self.left = len(sources)
        self._by_key: dict[bytes, list[int]] | None = None  # made at the first failure

    def delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.sink._in_flight -= 1
            key, value = message.key(), message.value()
            self.detach(self.index_of(key, value), key, value, error)
            return
        self.left -= 1
        if not self.left:
            self.sink._written_batch(self)

    def index_of(self, key: bytes | None, value: bytes | None) -> int:
        """The output a failure is about: the first one still in the batch with this key and
        value (one delivery callback serves the batch; outputs alike in both are alike)."""
        if self._by_key is None:
            self._by_key = defaultdict(list)
            for i, k in enumerate(self.keys):
                self._by_key[k].append(i)
        for i in self._by_key.get(key or b"", ()):
            if self.sources[i] is not None and self.values[i] == value:
                return i
        raise AssertionError(f"a delivery report for no output of the batch (key {key!r})")

    def detach(self, index: int, key: bytes | None, value: bytes | None, error: KafkaError) -> None:
        """Output ``index`` failed: it is retried (or replaced) on its own, outside the batch."""
        source = self.sources[index]
        assert source is not None  # an output fails once in its batch
        self.sources[index] = None
        self.left -= 1
        sink = self.sink
        headers = self.rows[index].headers if self.rows is not None else None
        output = _Output(
            self.topic, key, value, None, source, self.what, self.dead_letters, headers
        )
        sink._failed(output, error)
        if not self.left:
            sink._written_batch(self)


class KafkaSink:
    """The outputs of :func:`service.io.sinks.outputs.topic_outputs` and the dead-letter topic,
    through one idempotent producer."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_written: Written,
        brokers: Brokers,
        clock: Clock = utc_now,
    ) -> None:
        """``clock`` tells the UTC time that daily topics are named by."""
        self.topics = CurrentTopics(topic_strategy(settings.output), clock)
        self.outputs: list[RowOutput]
        self.step_metrics: StepMetrics | None  # not outputs: nothing waits for them
        self.outputs, self.step_metrics = topic_outputs(settings)
        self.outputs_per_row = len(self.outputs)
        self.keeps_inputs = any(output.keeps_inputs for output in self.outputs)
        self.clock = clock
        self.brokers = brokers
        self.metrics = metrics
        self.on_written = on_written
        self._config = {**producer_config(settings.kafka), **brokers.hooks()}
        self.producer = new_client(Producer, self._config)
        self._fenced: str | None = None  # the error that fenced the producer, until it is renewed
        self._in_flight = 0
        self._retries: deque[_Output] = deque()
        self._failing: dict[tuple[str, str], int] = {}  # (topic, error) -> failures since a line
        self._last_failure_summary = time.monotonic()
        self._latencies: defaultdict[str, list[int | None]] = defaultdict(list)
        # at debug level, every acknowledged output is logged with its input (for tracing)
        self._trace = log.bind().is_enabled_for(logging.DEBUG)

    def write(self, batch: ScoredBatch, rows: list[Row]) -> None:
        started = time.perf_counter()
        if self.step_metrics is not None:
            received = self.clock() - timedelta(seconds=batch.seconds)  # its scoring began
        encoded = [output.encode(batch, rows) for output in self.outputs]
        self.metrics.record_stage("encode", time.perf_counter() - started)
        started = time.perf_counter()
        topics = self.topics()
        keys = [row.oid.encode() for row in rows]
        for output, values in zip(self.outputs, encoded, strict=True):
            topic = output.topic(topics)
            kept, covered = _one_per_object(keys, rows) if output.one_per_object else (None, [])
            if kept is None:
                produced, produced_keys, produced_values = rows, keys, values
            else:
                self.metrics.record_superseded(topic, len(covered))
                produced = [rows[i] for i in kept]
                produced_keys, produced_values = [keys[i] for i in kept], [values[i] for i in kept]
            outputs = _BatchOutputs(
                self,
                [row.source for row in produced],
                produced_keys,
                produced_values,
                produced,
                topics,
                topic=topic,
                what=output.what,
                covered=covered,
            )
            self._produce_batch(outputs)
        if self.step_metrics is not None:
            self._send_step_metrics(self.step_metrics, received, rows)
        self.metrics.record_stage("produce", time.perf_counter() - started)

    def _send_step_metrics(self, metrics: StepMetrics, received: datetime, rows: list[Row]) -> None:
        """A batch's step metrics, sent as their framework sends them: once, without a key;
        one that cannot be sent is counted (``alert_anomaly_delivery_failures_total`` of the
        topic) and logged at debug level."""
        topic = metrics.topic
        value = metrics.encode(received, self.clock(), rows)

        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                self.metrics.record_delivery_failure(topic)
                log.debug("step_metrics_not_written", topic=topic, error=str(error))

        try:
            self.producer.produce(topic, value, on_delivery=delivered)
        except (BufferError, KafkaException) as exc:  # never blocks the scores behind it
            self.metrics.record_delivery_failure(topic)
            log.debug("step_metrics_not_written", topic=topic, error=str(exc))

    def _produce_batch(self, outputs: _BatchOutputs) -> None:
        """Produce one output per row of ``outputs`` (keyed by the row's object id), in one
        call with one delivery callback (a third of the cost of a call each). Those the full
        local queue turned away are produced one by one, in order, waiting for room; those
        refused for good leave the batch."""
        keys, values = outputs.keys, outputs.values
        messages: list[dict[str, Any]] = [
            {"key": k, "value": v} for k, v in zip(keys, values, strict=True)
        ]
        turned_away: list[tuple[int, KafkaError | None]] = []
        try:
            queued = self.producer.produce_batch(
                outputs.topic, messages, on_delivery=outputs.delivered
            )
            if queued < len(messages):
                turned_away = [(i, m["_error"]) for i, m in enumerate(messages) if "_error" in m]
        except KafkaException:  # refused as a whole (the topic): each alone is told why
            queued, turned_away = 0, [(i, None) for i in range(len(messages))]
        self._in_flight += queued
        for i, error in turned_away:
            if error is None or error.code() == KafkaError._QUEUE_FULL:
                error = self._send(outputs.topic, keys[i], values[i], None, outputs.delivered)
                if error is None:
                    continue
            outputs.detach(i, keys[i], values[i], error)

    def dead_letter(self, item: Input, error: InputError) -> None:
        key, value, headers = envelope.dead_letter(item, error)
        topic = self.topics().dead_letters
        output = _Output(topic, key, value, headers, item.source, error.reason, topic, item.headers)
        self._produce(output)

    def _produce(self, output: _Output) -> None:
        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is None:
                self._written(output)
            else:
                self._in_flight -= 1
                self._failed(output, error)

        o = output
        refused = self._send(o.topic, o.key, o.value, o.headers, delivered)
        if refused is not None:
            self._failed(o, refused)

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        delivered: Callable[[KafkaError | None, Message], None],
    ) -> KafkaError | None:
        """Queue one message (waiting while the local queue is full: the service's
        backpressure); the error if the producer refuses it before it is queued (size,
        arguments). While it waits, liveness ticks and a broker outage is given up on after
        ``kafka.unavailable_timeout_s`` as everywhere else."""
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                self._in_flight += 1
                return None
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.1)
                self.brokers.check()
                if self.brokers.heartbeat is not None:
                    self.brokers.heartbeat()
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                return error

    def _written(self, output: _Output) -> None:
        self._in_flight -= 1
        self._acknowledged(output.topic, (output.source,))

    def _written_batch(self, batch: _BatchOutputs) -> None:
        sources = [s for s in batch.sources if s is not None]
        if sources:
            self._in_flight -= len(sources)
        if sources or batch.covered:
            self._acknowledged(batch.topic, sources + batch.covered)

    def _acknowledged(self, topic: str, sources: Sequence[Lineage]) -> None:
        self.brokers.answered()
        self._latencies[topic].extend(s.timestamp_ms for s in sources)
        if self._trace:
            for s in sources:
                log.debug("output_acknowledged", input=f"{s.topic}[{s.partition}]@{s.offset}")
        self.on_written(sources)

    def _failed(self, output: _Output, error: KafkaError) -> None:
        code = error.code()
        if code in _FENCED or error.fatal():
            self._fenced = self._fenced or str(error)
        if code in _PERMANENT:
            if output.replacement:
                self._drop(output, error)
            else:
                self._replace(output, error)
            return
        backoff = RETRY_BACKOFF_S[min(output.attempt, len(RETRY_BACKOFF_S) - 1)]
        self.metrics.record_delivery_failure(output.topic)
        kind = (output.topic, error.name())
        if kind not in self._failing:
            if not self._failing:
                self._last_failure_summary = time.monotonic()
            self._failing[kind] = 0
            log.warning(
                "delivery_failed",
                error=str(error),
                topic=output.topic,
                source_topic=output.source.topic,
                source_partition=output.source.partition,
                source_offset=output.source.offset,
                retry_in_s=backoff,
                attempt=output.attempt + 1,
                more="further failures of this kind are counted in delivery_failures lines",
            )
        self._failing[kind] += 1
        self._retries.append(
            replace(output, attempt=output.attempt + 1, not_before=time.monotonic() + backoff)
        )

    def _replace(self, output: _Output, error: KafkaError) -> None:
        """A dead letter that refers to an output no retry can write (see the docstring)."""
        reason = _PERMANENT[error.code()]
        value = output.value or b""
        source = output.source
        key, body, headers = envelope.reference(
            source,
            reason,
            str(error),
            what=output.what,
            topic=output.topic,
            key=output.key,
            value=output.value,
            input_headers=output.input_headers,
        )
        self.metrics.record_dead_letter(reason)
        log.error(
            "output_replaced",
            reason=reason,
            error=str(error),
            original=output.what,
            original_size=len(value),
            original_key_size=len(output.key or b""),
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
        )
        topic = output.dead_letter_topic
        self._produce(_Output(topic, key, body, headers, source, reason, topic, replacement=True))

    def _drop(self, reference: _Output, error: KafkaError) -> None:
        """A reference refused for good: nothing of its input can be written, and retrying
        would block the partition behind it forever. Logged, counted, and its input committed."""
        source = reference.source
        self.metrics.record_output_dropped(reference.topic, reference.what)
        log.error(
            "output_dropped",
            reason=reference.what,
            error=str(error),
            topic=reference.topic,
            size=len(reference.value or b"") + len(reference.key or b""),
            source_topic=source.topic,
            source_partition=source.partition,
            source_offset=source.offset,
            more="neither the output nor the dead letter that refers to it could be written; "
            "the input is committed without an output",
        )
        self.on_written((source,))

    def poll(self, timeout_s: float) -> None:
        self.producer.poll(timeout_s)
        if self._fenced is not None:
            self._renew_producer()
        now = time.monotonic()
        if self._failing and now - self._last_failure_summary >= SUMMARY_EVERY_S:
            log.warning(
                "delivery_failures",
                failures={f"{topic}: {error}": n for (topic, error), n in self._failing.items()},
                retrying=len(self._retries),
                in_flight=self._in_flight,
            )
            self._failing.clear()
            self._last_failure_summary = now
        for _ in range(len(self._retries)):
            retry = self._retries.popleft()
            if retry.not_before > now:
                self._retries.append(retry)
                continue
            self._produce(retry)
        for topic, timestamps in self._latencies.items():
            self.metrics.record_delivered(topic, timestamps)
        self._latencies.clear()

    def _renew_producer(self) -> None:
        """Replace a fenced producer: what it still holds fails into the retries (purged), then
        a new producer writes them and everything after."""
        old, error = self.producer, self._fenced
        old.purge()
        old.flush(0)  # serves the purged outputs' reports: they join the retries
        self.producer = new_client(Producer, self._config)
        self._fenced = None
        self.metrics.record_producer_renewal()
        log.warning("producer_renewed", error=error, retrying=len(self._retries))

    def in_flight(self) -> int:
        """Outputs produced and not yet acknowledged (retries included)."""
        return self._in_flight + len(self._retries)

    def flush(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.in_flight() and time.monotonic() < deadline:
            self.poll(min(0.1, max(0.0, deadline - time.monotonic())))

    def checkpoint(self, state: dict[str, object]) -> None:
        """Nothing to add: acknowledged outputs are in their topics."""

    def resumed(self) -> dict[str, Any]:
        """Topics keep no source state: a replay into topics starts afresh."""
        return {}

    def close(self, timeout_s: float = 10.0) -> None:
        if self.producer.flush(max(0.0, timeout_s)):
            # unacknowledged outputs are not committed: drop them so that nothing blocks
            self.producer.purge()
            self.producer.flush(0)
        del self.producer  # frees librdkafka's threads and connections now


def _one_per_object(keys: list[bytes], rows: list[Row]) -> tuple[list[int] | None, list[Lineage]]:
    """The rows to write when only the last row of each object (key) counts, in row order,
    and the inputs of the others; (None, []) when every object is there once."""
    last = {key: i for i, key in enumerate(keys)}
    if len(last) == len(keys):
        return None, []
    kept = sorted(last.values())
    chosen = set(kept)
    return kept, [row.source for i, row in enumerate(rows) if i not in chosen]
