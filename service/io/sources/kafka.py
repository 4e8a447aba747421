"""Kafka sources: the live service's consumer group, and a bounded topic range for replays."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from service.config import Settings
from service.exceptions import KafkaServiceError
from service.io.kafka import bounded, consumer_config, list_topics, new_client
from service.ops.availability import Brokers
from service.ops.metrics import Metrics
from service.records import Input, Lineage, Partition


class Rebalancing(Protocol):
    """What a consumer group tells its user (the engine)."""

    def on_assigned(self, partitions: set[Partition]) -> None: ...

    def on_revoked(self, partitions: set[Partition]) -> None: ...

    def on_lost(self, partitions: set[Partition]) -> None: ...

    def on_committed(self, positions: dict[Partition, int]) -> None: ...


def to_input(message: Message) -> Input:
    """A consumed message as an :class:`Input` (timestamp None when the broker has none)."""
    kind, ts = message.timestamp()
    source = Lineage(
        message.topic() or "",
        message.partition() or 0,
        message.offset() or 0,
        ts if kind != 0 and ts >= 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
    )
    headers = message.headers()  # a list of (name, value) as consumed
    return Input(source, message.key(), message.value(), headers)  # type: ignore[arg-type]


def _positions(partitions: list[TopicPartition]) -> set[Partition]:
    return {(p.topic, p.partition) for p in partitions}


class KafkaSource:
    """The input topics (names or ^patterns) as a member of the consumer group; offsets are
    committed only as the engine says (never automatically)."""

    def __init__(self, settings: Settings, metrics: Metrics, brokers: Brokers) -> None:
        s = settings
        self.topics = s.input.topics
        self.metrics = metrics
        self.brokers = brokers
        self._listener: Rebalancing | None = None
        self._failed_commits = 0
        self._in_rebalance = False

        def statistics(stats_json: str) -> None:
            metrics.record_statistics(stats_json)
            brokers.statistics(stats_json)

        self.consumer = new_client(
            Consumer,
            {
                **consumer_config(s.kafka, s.input.group_id, s.input.auto_offset_reset),
                **brokers.hooks(),
                "stats_cb": statistics,
                "on_commit": self._committed,
            },
        )

    def check_topics(self) -> dict[str, list[str]]:
        """The topics each input topic or pattern names; an input topic that does not exist is
        an error (a pattern that matches nothing yet is not: topics may come later)."""
        metadata = list_topics(self.consumer, self.brokers)
        existing = {t for t, m in metadata.topics.items() if m.error is None}
        found = {}
        for topic in self.topics:
            if topic.startswith("^"):
                pattern = re.compile(topic)
                found[topic] = sorted(t for t in existing if pattern.match(t))
            elif topic in existing:
                found[topic] = [topic]
            else:
                raise KafkaServiceError(
                    f"input topic {topic!r} does not exist on {self.brokers.bootstrap_servers} "
                    "(for a pattern, start it with ^)"
                )
        return found

    def start(self, listener: Rebalancing) -> None:
        self._listener = listener

        def within(callback: Callable[[set[Partition]], None]) -> Callable[[Any, Any], None]:
            def call(_: Any, partitions: list[TopicPartition]) -> None:
                self._in_rebalance = True
                try:
                    callback(_positions(partitions))
                finally:
                    self._in_rebalance = False

            return call

        self.consumer.subscribe(
            self.topics,
            on_assign=within(listener.on_assigned),
            on_revoke=within(listener.on_revoked),
            on_lost=within(listener.on_lost),
        )

    def read(self, max_inputs: int, timeout_s: float) -> list[Input]:
        """What is fetched already (up to ``max_inputs``), else wait up to ``timeout_s`` for
        the first message. (``consume(n, timeout)`` alone would hold messages back until ``n``
        arrived or the timeout passed.)"""
        self.brokers.check()
        messages = self.consumer.consume(max_inputs, 0)
        if not messages:
            messages = self.consumer.consume(1, timeout_s)
            if messages and max_inputs > 1:
                messages.extend(self.consumer.consume(max_inputs - 1, 0))
        inputs = []
        for message in messages:
            error = message.error()
            if error is None:
                inputs.append(to_input(message))
            elif error.fatal():
                raise KafkaServiceError(f"fatal consumer error: {error}")
            else:
                structlog.get_logger(__name__).warning("consume_error", error=str(error))
        if inputs:
            self.brokers.answered()
        for topic, n in Counter(i.source.topic for i in inputs).items():
            self.metrics.record_consumed(topic, n)
        return inputs

    def commit(self, positions: dict[Partition, int], wait_s: float | None) -> None:
        """Asynchronous commits (``wait_s`` None) report through the consumer's callback
        (served by consume); a synchronous one (revocation, shutdown) waits at most ``wait_s``
        and reports at once. A failure is logged and the positions stay uncommitted (the next
        commit covers them)."""
        offsets = [TopicPartition(t, p, pos) for (t, p), pos in positions.items()]
        if wait_s is None:
            self.consumer.commit(offsets=offsets, asynchronous=True)
            return
        started = time.perf_counter()

        def commit() -> None:
            self.consumer.commit(offsets=offsets, asynchronous=False)

        try:
            if self._in_rebalance:  # there librdkafka completes a commit on this thread only
                commit()
                done = True
            else:
                done = bounded(commit, wait_s, "commit")
        except KafkaException as exc:
            done = False
            self._commit_failed(str(exc), positions)
        if not done:
            self.metrics.record_commit(False, time.perf_counter() - started)
            return
        self.metrics.record_commit(True, time.perf_counter() - started)
        self._commit_succeeded(positions)

    def _committed(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        positions = {(p.topic, p.partition): p.offset for p in partitions if p.error is None}
        if error is not None or len(positions) < len(partitions):
            self.metrics.record_commit(False)
            failed = {(p.topic, p.partition): p.offset for p in partitions}
            self._commit_failed(str(error), failed)
            return
        self.metrics.record_commit(True)
        self._commit_succeeded(positions)

    def _commit_failed(self, error: str, positions: dict[Partition, int]) -> None:
        """The first failing commit is a warning, those that follow debug lines (a group's
        coordinator is often unknown for a while: at start, in a rebalance, in an outage)."""
        self._failed_commits += 1
        log = structlog.get_logger(__name__)
        (log.warning if self._failed_commits == 1 else log.debug)(
            "commit_failed", error=error, positions=_fmt(positions), retried_at_next_commit=True
        )

    def _commit_succeeded(self, positions: dict[Partition, int]) -> None:
        if self._failed_commits:
            structlog.get_logger(__name__).info(
                "commits_recovered", failed_commits=self._failed_commits
            )
            self._failed_commits = 0
        if self._listener is not None:
            self._listener.on_committed(positions)

    def state(self) -> dict[str, Any]:
        return {}

    def total(self) -> int | None:
        return None

    def close(self, timeout_s: float = 10.0) -> None:
        """Leave the group (its partitions move on at once), waiting at most ``timeout_s``."""
        bounded(self.consumer.close, timeout_s, "consumer_close")


def _fmt(positions: dict[Partition, int]) -> dict[str, int]:
    return {f"{t}[{p}]": pos for (t, p), pos in sorted(positions.items())}
