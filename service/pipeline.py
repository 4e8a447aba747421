"""The streaming scoring pipeline: consume -> decode -> route -> micro-batch -> score -> produce
-> commit, at least once.

One thread drives everything (librdkafka does the network I/O in its own threads):

* messages are consumed in batches, decoded with the configured format, parsed by the survey
  adapter, routed to the top-level class with the highest probability, and their features written
  into a float32 row in the routed bundle's feature order;
* rows wait in a :class:`MicroBatcher` per class until it is full or its deadline passes, then the
  class's :class:`Scorer` scores the batch on the device and one score per row is produced;
* bad messages are produced, with their original bytes, to the dead-letter topic;
* the :class:`OffsetTracker` counts broker acknowledgements, and only offsets whose outputs (and
  all earlier ones in the partition) are acknowledged get committed;
* failed deliveries are produced again with backoff, so a broker outage loses nothing;
* on revocation the open batches are scored, outputs flushed and positions committed; on stop
  (SIGTERM) the same happens for every partition before the consumer leaves the group.
"""

from __future__ import annotations

import gc
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from service import __version__
from service.batching import MicroBatcher
from service.codec import BatchEncoder, make_batch_encoder
from service.config import ENV_PREFIX, Settings
from service.exceptions import InferenceError, InputError, KafkaServiceError, SettingsError
from service.inference import Scored
from service.kafka import consumer_config, producer_config
from service.logs import LIBRDKAFKA_LOGGER
from service.metrics import Metrics
from service.offsets import OffsetTracker
from service.processing import (
    AlertProcessor,
    Headers,
    Inference,
    dead_letter_headers,
    start_inference,
)
from service.routing import Row, Source

log = structlog.get_logger(__name__)

RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
IDLE_WAIT_S = 0.5  # longest wait for input before the loop's housekeeping runs again
ACK_POLL_S = 0.005  # ... while outputs await acknowledgement


@dataclass
class _Retry:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    source: Source
    attempt: int
    not_before: float


@dataclass
class Stats:
    """Counts since start (also exported as metrics); read by the demo and by tests."""

    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    acknowledged: int = 0
    delivery_failures: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    first_consumed_at: float | None = None  # time.monotonic()
    last_acknowledged_at: float | None = None

    def throughput(self) -> float:
        """Acknowledged outputs per second, from the first message consumed to the last ack."""
        if self.first_consumed_at is None or self.last_acknowledged_at is None:
            return 0.0
        return self.acknowledged / max(1e-9, self.last_acknowledged_at - self.first_consumed_at)


class ScoringService:
    """The service; ``run()`` blocks until ``stop()`` (signal-safe) or the idle limit."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        on_ready: Callable[[bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stats = Stats()
        self._on_ready = on_ready or (lambda ready: None)
        if not settings.input.topics:
            raise SettingsError(
                "invalid settings: no input topics: set --topic, [input] topics in the config "
                f"file or {ENV_PREFIX}INPUT__TOPICS (a JSON list)"
            )
        self.processor = AlertProcessor(settings)
        self.survey = self.processor.survey
        self.device = self.processor.device
        self.routes = self.processor.routes
        for r in self.routes.values():
            m = r.bundle.manifest
            self.metrics.record_model(
                m.survey, m.top_class, m.scorer, m.model_version, r.bundle.checksum
            )
        self.encode: BatchEncoder = make_batch_encoder(
            settings.output.format, settings.output.confluent_schema_id
        )
        self.batcher: MicroBatcher[Row] = MicroBatcher(
            settings.batch.max_rows, settings.batch.max_delay_ms / 1000
        )
        self.tracker = OffsetTracker()
        self._retries: deque[_Retry] = deque()
        self._stopping = False
        self._assigned: set[tuple[str, int]] = set()
        self._batch_id = 0
        self._decoded: dict[str, int] = {}  # decode paths at the last metrics flush
        self._decode_seconds: list[float] = []  # per message, until the next metrics flush
        self._acknowledged: defaultdict[str, list[int | None]] = defaultdict(list)  # ditto
        self.consumer: Consumer
        self.producer: Producer
        self.inference: Inference

    # -- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to drain, commit and return (safe from a signal handler)."""
        self._stopping = True

    def run(self, heartbeat: Callable[[], None] | None = None) -> Stats:
        """Consume and score until stopped; then drain, commit and leave the group."""
        s = self.settings
        self.consumer = Consumer(
            {
                **consumer_config(s.kafka, s.input.group_id, s.input.auto_offset_reset),
                "stats_cb": self.metrics.record_statistics,
                "error_cb": self._client_error,
                "on_commit": self._committed,
                "logger": LIBRDKAFKA_LOGGER,  # librdkafka's own lines as structured logs
            }
        )
        self.producer = Producer(
            {
                **producer_config(s.kafka),
                "error_cb": self._client_error,
                "logger": LIBRDKAFKA_LOGGER,
            }
        )
        try:
            self.inference = start_inference(s, self.routes)
        except InferenceError:
            self.consumer.close()
            raise
        log.info(
            "service_starting",
            version=__version__,
            topics=s.input.topics,
            group_id=s.input.group_id,
            output=s.output.topic,
            dead_letter=s.output.dead_letter_topic,
            device=str(self.device),
            inference_pid=getattr(self.inference, "pid", None),  # None: inline
            models={t: r.bundle.name for t, r in self.routes.items()},
        )
        self.consumer.subscribe(
            s.input.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        # Everything loaded so far (models, settings, schemas) lives as long as the service:
        # out of the garbage collector's sight, it is not traversed again by every collection.
        gc.freeze()
        last_commit = last_input = time.monotonic()
        try:
            while not self._stopping:
                if heartbeat is not None:
                    heartbeat()
                messages = self._consume()
                if messages:
                    last_input = time.monotonic()
                    self._count_consumed(messages)
                self._handle(messages)
                for top, rows in self.batcher.due():
                    self._score(top, rows)
                self._publish_scored()
                self.producer.poll(0)
                self._resend_due()
                self._flush_metrics()
                now = time.monotonic()
                if now - last_commit >= s.commit_interval_ms / 1000:
                    self._commit(wait=False)
                    last_commit = now
                self.metrics.record_in_flight(self.tracker.in_flight())
                if (
                    s.stop_after_idle_s is not None
                    and now - last_input >= s.stop_after_idle_s
                    and self.tracker.in_flight() == 0
                ):
                    log.info("idle_stop", idle_s=round(now - last_input, 1))
                    break
        finally:
            self._shutdown()
        return self.stats

    def _shutdown(self) -> None:
        log.info(
            "service_draining", open_rows=len(self.batcher), in_flight=self.tracker.in_flight()
        )
        try:
            self._finish_in_flight()
        except InferenceError as exc:  # what was not scored is not committed: it is redone
            log.error("inference_failed", error=str(exc), in_flight=self.tracker.in_flight())
        self._commit()
        self.processor.router.report()
        self.consumer.close()  # leaves the group: partitions move on at once
        self.producer.flush(5)
        self.inference.close()
        del self.producer  # frees librdkafka's threads and connections now
        self._on_ready(False)
        log.info(
            "service_stopped",
            consumed=self.stats.consumed,
            scored=self.stats.scored,
            dead_lettered=self.stats.dead_lettered,
            acknowledged=self.stats.acknowledged,
            left_in_flight=self.tracker.in_flight(),
            decoded=self.processor.decode_paths(),
        )

    def _finish_in_flight(self, partitions: set[tuple[str, int]] | None = None) -> None:
        """Score open batches and wait (bounded) for the acknowledgements of ``partitions``."""
        for top, rows in self.batcher.drain():
            self._score(top, rows)
        deadline = time.monotonic() + self.settings.drain_timeout_s
        while self.inference.pending() and time.monotonic() < deadline:
            self._publish_scored(0.1)

        def pending() -> int:
            if partitions is None:
                return self.tracker.in_flight()
            return sum(self.tracker.in_flight(tp) for tp in partitions)

        while pending() and time.monotonic() < deadline:
            self.producer.poll(0.1)
            self._resend_due()
        self._flush_metrics()
        if pending():
            log.warning(
                "drain_timeout", unacknowledged=pending(), timeout_s=self.settings.drain_timeout_s
            )

    # -- rebalancing -----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned |= {(p.topic, p.partition) for p in partitions}
        self.metrics.record_rebalance("assign")
        self._on_ready(True)
        log.info(
            "partitions_assigned", partitions=[f"{p.topic}[{p.partition}]" for p in partitions]
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in partitions}
        self.metrics.record_rebalance("revoke")
        log.info(
            "partitions_revoked",
            partitions=sorted(f"{t}[{p}]" for t, p in revoked),
            scored=self.stats.scored,
            open_rows=len(self.batcher),
            in_flight=self.tracker.in_flight(),
        )
        self._finish_in_flight(revoked)
        self._commit(only=revoked)
        self._forget(revoked)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in partitions}
        self.metrics.record_rebalance("lost")
        log.warning("partitions_lost", partitions=sorted(f"{t}[{p}]" for t, p in lost))
        self._forget(lost)

    def _forget(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self.tracker.forget(tp)
            self.metrics.forget_partition(*tp)
        self._assigned -= partitions

    # -- consuming -------------------------------------------------------------------------

    def _client_error(self, error: KafkaError) -> None:
        log.warning("kafka_error", error=str(error), fatal=error.fatal())
        if error.fatal():
            raise KafkaServiceError(f"fatal Kafka client error: {error}")

    def _consume(self) -> list[Message]:
        """What is fetched already (up to a batch), else wait for the first message - but not
        past the oldest open batch's deadline, and only briefly while outputs await their
        acknowledgements (their callbacks are served between consumes). ``consume(n, timeout)``
        alone would hold messages back until ``n`` arrived or the timeout passed."""
        max_rows = self.settings.batch.max_rows
        messages = self.consumer.consume(max_rows, 0)
        if messages:
            return messages
        waits = [IDLE_WAIT_S]
        deadline = self.batcher.seconds_to_deadline()
        if deadline is not None:
            waits.append(deadline)
        if self.tracker.in_flight():
            waits.append(ACK_POLL_S)
        messages = self.consumer.consume(1, min(waits))
        if messages and max_rows > 1:
            messages.extend(self.consumer.consume(max_rows - 1, 0))
        return messages

    def _count_consumed(self, messages: list[Message]) -> None:
        counts = Counter(m.topic() for m in messages if m.error() is None)
        if counts and self.stats.first_consumed_at is None:
            self.stats.first_consumed_at = time.monotonic()
        for topic, n in counts.items():
            self.stats.consumed += n
            self.metrics.record_consumed(topic or "", n)

    def _flush_metrics(self) -> None:
        """Metrics gathered per message, recorded in bulk once per loop."""
        if self._decode_seconds:
            self.metrics.record_stage("decode", self._decode_seconds)
            self._decode_seconds = []
        for topic, timestamps in self._acknowledged.items():
            self.metrics.record_delivered(topic, timestamps)
        self._acknowledged.clear()
        self.metrics.record_coverage(self.survey.name, self.processor.router.take_coverage())
        paths = self.processor.decode_paths()
        for path, n in paths.items():
            if n > self._decoded.get(path, 0):
                self.metrics.record_decoded(path, n - self._decoded.get(path, 0))
        self._decoded = paths

    def _handle(self, messages: list[Message]) -> None:
        """Decode and route consumed messages into the micro-batches; bad ones are dead
        letters."""
        taken: list[Message] = []
        sources: list[Source] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaServiceError(f"fatal consumer error: {error}")
                log.warning("consume_error", error=str(error))
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None
            assert partition is not None
            assert offset is not None
            ts_type, ts = message.timestamp()
            timestamp = ts if ts_type != 0 and ts >= 0 else None  # 0: TIMESTAMP_NOT_AVAILABLE
            sources.append(Source(topic, partition, offset, timestamp))
            taken.append(message)
        if not taken:
            return
        started = time.perf_counter()
        results = self.processor.rows_many([m.value() for m in taken], sources)
        self._decode_seconds.append(time.perf_counter() - started)
        register, add = self.tracker.register, self.batcher.add
        for message, source, result in zip(taken, sources, results, strict=True):
            if isinstance(result, InputError):
                register((source.topic, source.partition), source.offset, outputs=1)
                self._dead_letter(message, result, source)
                continue
            register((source.topic, source.partition), source.offset, outputs=len(result))
            for top, row in result:
                full = add(top, row)
                if full is not None:
                    self._score(top, full)

    # -- scoring and producing -------------------------------------------------------------

    def _score(self, top: str, rows: list[Row]) -> None:
        """Hand a full or due micro-batch to inference, and publish what it has finished."""
        self.inference.submit(top, [row.features for row in rows], rows)
        self._publish_scored()

    def _publish_scored(self, wait_s: float = 0.0) -> None:
        """Encode and produce the scores of every batch inference has finished (waiting up to
        ``wait_s`` for the first when none is)."""
        for scored in self.inference.completed(wait_s):
            self._publish(scored)

    def _publish(self, scored: Scored[list[Row]]) -> None:
        top, rows = scored.top, scored.tag
        self._batch_id += 1
        batch = self.processor.scored_batch(
            top, rows, scored.raw, scored.percentile, scored.nearest, scored.seconds
        )
        manifest = self.routes[top].bundle.manifest
        self.metrics.record_stage("score", batch.seconds)
        self.metrics.record_batch(
            self.survey.name,
            top,
            manifest.scorer,
            self.device.type,
            batch.seconds,
            batch.raw,
            batch.percentile,
        )
        if self.device.type == "cuda":
            self.metrics.record_device_memory(str(self.device), scored.device_memory)
        started = time.perf_counter()
        encoded = self.encode(batch.columns, len(rows))
        self.metrics.record_stage("encode", time.perf_counter() - started)
        started = time.perf_counter()
        for row, value in zip(rows, encoded, strict=True):
            self._produce(self.settings.output.topic, row.oid.encode(), value, None, row.source)
        self.metrics.record_stage("produce", time.perf_counter() - started)
        self.stats.scored += len(rows)
        self.stats.by_class[top] = self.stats.by_class.get(top, 0) + len(rows)
        log.debug(
            "batch_scored",
            batch_id=self._batch_id,
            top_class=top,
            rows=len(rows),
            seconds=round(batch.seconds, 6),
        )

    def _dead_letter(self, message: Message, error: InputError, source: Source) -> None:
        log.warning(
            "dead_letter",
            reason=error.reason,
            error=str(error),
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
        )
        self.stats.dead_lettered += 1
        self.metrics.record_dead_letter(error.reason)
        self._produce(
            self.settings.output.dead_letter_topic,
            message.key(),
            message.value(),  # a tombstone (None) stays one
            dead_letter_headers(source, error, message.headers()),
            source,
        )

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
            if error is None:
                self.stats.acknowledged += 1
                self.stats.last_acknowledged_at = time.monotonic()
                self._acknowledged[topic].append(source[3])
                self.tracker.acknowledge((source[0], source[1]), source[2])
                return
            backoff = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
            self.stats.delivery_failures += 1
            self.metrics.record_delivery_failure(topic)
            log.warning(
                "delivery_failed",
                error=str(error),
                topic=topic,
                source_topic=source[0],
                source_partition=source[1],
                source_offset=source[2],
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
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self.producer.poll(0.1)
            except KafkaException as exc:
                raise KafkaServiceError(
                    f"cannot produce: {exc}", topic=source[0], partition=source[1], offset=source[2]
                ) from exc

    def _resend_due(self) -> None:
        now = time.monotonic()
        for _ in range(len(self._retries)):
            retry = self._retries.popleft()
            if retry.not_before > now:
                self._retries.append(retry)
                continue
            self._produce(
                retry.topic, retry.key, retry.value, retry.headers, retry.source, retry.attempt
            )

    # -- committing ------------------------------------------------------------------------

    def _commit(self, only: set[tuple[str, int]] | None = None, wait: bool = True) -> None:
        """Commit acknowledged positions. Periodic commits do not wait (an outage must not
        block the loop; the callback records the result and failures are retried at the next
        interval); revocation and shutdown wait for the result."""
        positions = {
            tp: pos for tp, pos in self.tracker.committable().items() if only is None or tp in only
        }
        if not positions:
            return
        offsets = [TopicPartition(t, p, pos) for (t, p), pos in positions.items()]
        if not wait:
            self.consumer.commit(offsets=offsets, asynchronous=True)
            return
        started = time.perf_counter()
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.metrics.record_commit(False, time.perf_counter() - started)
            log.warning("commit_failed", error=str(exc), positions=_fmt(positions))
            return
        self.metrics.record_stage("commit", time.perf_counter() - started)
        self.tracker.mark_committed(positions)  # counted by _committed when its callback runs

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """Result of an asynchronous commit (served by consume())."""
        positions = {(p.topic, p.partition): p.offset for p in partitions if p.error is None}
        if error is not None or len(positions) < len(partitions):
            self.metrics.record_commit(False)
            log.warning("commit_failed", error=str(error), positions=_fmt(positions))
            return
        self.metrics.record_commit(True)
        self.tracker.mark_committed(positions)
        log.debug("committed", positions=_fmt(positions))


def _fmt(positions: dict[tuple[str, int], int]) -> dict[str, int]:
    return {f"{t}[{p}]": pos for (t, p), pos in sorted(positions.items())}
