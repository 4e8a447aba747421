"""Scores and dead letters to Kafka topics, written at least once.

Every output is produced with a delivery callback; an acknowledged one is reported to the engine
(``on_written``), which commits an input's offset only when all its outputs are. A delivery that
finally fails (librdkafka retries within ``message.timeout.ms``) is produced again with backoff,
so a broker outage loses nothing.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from service.availability import Brokers
from service.codec import BatchEncoder, make_batch_encoder
from service.config import Settings
from service.exceptions import InputError, KafkaServiceError
from service.kafka import producer_config
from service.metrics import Metrics
from service.processing import ScoredBatch
from service.routing import Row, Source
from service.sinks import Written, dead_letter_headers
from service.sources import Headers, Input
from service.sources.kafka import new_client

log = structlog.get_logger(__name__)

RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class _Retry:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    source: Source
    attempt: int
    not_before: float


class KafkaSink:
    """The score topic and the dead-letter topic, through one idempotent producer."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        on_written: Written,
        brokers: Brokers,
    ) -> None:
        self.topic = settings.output.topic
        self.dead_letter_topic = settings.output.dead_letter_topic
        self.brokers = brokers
        self.metrics = metrics
        self.on_written = on_written
        self.encode: BatchEncoder = make_batch_encoder(
            settings.output.format, settings.output.confluent_schema_id
        )
        self.producer = new_client(Producer, {**producer_config(settings.kafka), **brokers.hooks()})
        self.acknowledged = 0
        self.failures = 0
        self.last_acknowledged_at: float | None = None  # time.monotonic()
        self._in_flight = 0
        self._retries: deque[_Retry] = deque()
        self._latencies: defaultdict[str, list[int | None]] = defaultdict(list)

    def write(self, batch: ScoredBatch, rows: list[Row]) -> None:
        started = time.perf_counter()
        encoded = self.encode(batch.columns, len(rows))
        self.metrics.record_stage("encode", time.perf_counter() - started)
        started = time.perf_counter()
        for row, value in zip(rows, encoded, strict=True):
            self._produce(self.topic, row.oid.encode(), value, None, row.source)
        self.metrics.record_stage("produce", time.perf_counter() - started)

    def dead_letter(self, item: Input, error: InputError) -> None:
        headers = dead_letter_headers(item.source, error, item.headers)
        # the original value, a tombstone (None) included
        self._produce(self.dead_letter_topic, item.key, item.value, headers, item.source)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        source: Source,
        attempt: int = 0,
    ) -> None:
        def delivered(error: KafkaError | None, _: Message) -> None:
            self._in_flight -= 1
            if error is None:
                self.acknowledged += 1
                self.last_acknowledged_at = time.monotonic()
                self.brokers.answered()
                self._latencies[topic].append(source.timestamp_ms)
                self.on_written(source)
                return
            backoff = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
            self.failures += 1
            self.metrics.record_delivery_failure(topic)
            log.warning(
                "delivery_failed",
                error=str(error),
                topic=topic,
                source_topic=source.topic,
                source_partition=source.partition,
                source_offset=source.offset,
                retry_in_s=backoff,
                attempt=attempt + 1,
            )
            self._retries.append(
                _Retry(topic, key, value, headers, source, attempt + 1, time.monotonic() + backoff)
            )

        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                self._in_flight += 1
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.1)
            except KafkaException as exc:
                raise KafkaServiceError(
                    f"cannot produce: {exc}",
                    topic=source.topic,
                    partition=source.partition,
                    offset=source.offset,
                ) from exc

    def poll(self, timeout_s: float) -> None:
        self.producer.poll(timeout_s)
        now = time.monotonic()
        for _ in range(len(self._retries)):
            retry = self._retries.popleft()
            if retry.not_before > now:
                self._retries.append(retry)
                continue
            self._produce(
                retry.topic, retry.key, retry.value, retry.headers, retry.source, retry.attempt
            )
        for topic, timestamps in self._latencies.items():
            self.metrics.record_delivered(topic, timestamps)
        self._latencies.clear()

    def in_flight(self) -> int:
        """Outputs produced and not yet acknowledged (retries included)."""
        return self._in_flight + len(self._retries)

    def flush(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.in_flight() and time.monotonic() < deadline:
            self.poll(min(0.1, max(0.0, deadline - time.monotonic())))

    def checkpoint(self, state: dict[str, object]) -> None:
        """Nothing to add: acknowledged outputs are in their topics."""

    def close(self) -> None:
        self.producer.flush(5)
        del self.producer  # frees librdkafka's threads and connections now
