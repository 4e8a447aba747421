"""A bounded range of a topic, for replays: read with assign() (no group membership, no commits),
from explicit offsets or a time, to explicit offsets, a time or the end of each partition."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from service.config import ClientConfig
from service.exceptions import KafkaServiceError
from service.io.kafka import FETCH_QUEUE_BACKOFF_MS, bounded, list_topics, new_client
from service.io.sources.kafka import Rebalancing, to_input
from service.ops.availability import Brokers
from service.records import Input, Partition


class TopicRange:
    """A bounded range of a topic, read with assign() (no group membership, no commits).

    Start: explicit offsets, else the offset ``offsets_for_times`` gives for ``since`` (only an
    optimisation: brokers may answer earlier offsets), else the beginning. End: explicit end
    offsets (exclusive), else the end of the partition when it is reached. Messages whose
    timestamp is outside [since, until) are read but not scored, so the boundaries are exact.
    The resumable position is the next offset per partition whose outputs are all written.
    """

    def __init__(
        self,
        client: ClientConfig,
        topic: str,
        partitions: list[int] | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        start_offsets: dict[int, int] | None = None,
        end_offsets: dict[int, int] | None = None,
        resume: dict[str, Any] | None = None,
        brokers: Brokers | None = None,
    ) -> None:
        self.topic = topic
        self.brokers = brokers or Brokers(str(client.get("bootstrap.servers")), 120.0)
        self.since_ms, self.until_ms = since_ms, until_ms
        self._consumer = new_client(
            Consumer,
            {
                "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
                **client,
                "group.id": f"alert-anomaly-replay-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                **self.brokers.hooks(),
            },
        )
        metadata = list_topics(self._consumer, self.brokers, topic)
        known = metadata.topics.get(topic)
        if known is None or known.error is not None or not known.partitions:
            raise KafkaServiceError(f"topic {topic!r} does not exist")
        available = sorted(known.partitions)
        self.partitions = partitions or available
        unknown = sorted(set(self.partitions) - set(available))
        if unknown:
            raise KafkaServiceError(f"topic {topic!r} has no partitions {unknown}")
        self.start_at = self._start_offsets(start_offsets or {})
        self.end = dict(end_offsets or {})
        self._position = dict(self.start_at)
        for key, offset in (resume or {}).items():
            p = int(key)
            self._position[p] = max(self._position.get(p, 0), int(offset))
        self._committed = dict(self._position)
        self._active: set[int] | None = None
        self._floor: dict[int, int] = {}  # the first offset of each partition read
        self._listener: Rebalancing | None = None

    def _start_offsets(self, explicit: dict[int, int]) -> dict[int, int]:
        start = {p: explicit.get(p, 0) for p in self.partitions}
        if self.since_ms is not None:
            asked = [
                TopicPartition(self.topic, p, self.since_ms)
                for p in self.partitions
                if p not in explicit
            ]
            if asked:
                for tp in self._consumer.offsets_for_times(asked, timeout=30):
                    # -1: no message at or after `since`: nothing to read in that partition
                    start[tp.partition] = tp.offset if tp.offset >= 0 else -1
        return start

    def start(self, listener: Rebalancing) -> None:
        self._listener = listener
        self._active = {
            p
            for p in self.partitions
            if self._position[p] >= 0 and (p not in self.end or self._position[p] < self.end[p])
        }
        # a start beyond the partition's end is out of range: the consumer goes back to the
        # earliest offset (auto.offset.reset, meant for a start before the log's), below the
        # start, which ends the partition: nothing of it is in the range
        self._floor = {p: self._position[p] for p in self._active}
        if self._active:
            self._consumer.assign(
                [TopicPartition(self.topic, p, self._position[p]) for p in self._active]
            )

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        self.brokers.check()
        active = self._active
        if not active:
            return None
        inputs = []
        for message in self._consumer.consume(max_inputs, timeout_s):
            p = message.partition()
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    active.discard(p or 0)
                    continue
                raise KafkaServiceError(f"replay read failed: {error}", topic=self.topic)
            assert p is not None
            offset = message.offset() or 0
            if p not in active:
                continue
            if offset < self._floor[p]:  # reset from a start beyond the end (see start())
                active.discard(p)
                continue
            if p in self.end and offset >= self.end[p]:
                active.discard(p)
                continue
            self.brokers.answered()
            item = to_input(message)
            if not self._in_time_range(item.source.timestamp_ms):
                item = item._replace(value=None, key=None, headers=None, records=[])
            inputs.append(item)
        return inputs

    def _in_time_range(self, timestamp: int | None) -> bool:
        if self.since_ms is None and self.until_ms is None:
            return True
        if timestamp is None:
            return False
        if self.since_ms is not None and timestamp < self.since_ms:
            return False
        return self.until_ms is None or timestamp < self.until_ms

    def commit(self, positions: dict[Partition, int], wait_s: float | None) -> None:
        for (_, p), offset in positions.items():
            self._committed[p] = max(self._committed.get(p, 0), offset)
        if self._listener is not None:
            self._listener.on_committed(positions)

    def state(self) -> dict[str, Any]:
        return {str(p): o for p, o in self._committed.items()}

    def bounds(self) -> dict[int, tuple[int, int | None]]:
        """Each partition's range as this source reads it: (first offset, end offset or None:
        the end of the partition when it is reached); first -1: nothing to read."""
        return {p: (self._position[p], self.end.get(p)) for p in self.partitions}

    def watermarks(self) -> dict[int, tuple[int, int]] | None:
        """Each partition's (low, high) watermarks as the broker answers now, or None when it
        does not: estimates only (some brokers answer a stale high watermark)."""
        out = {}
        for p in self.partitions:
            try:
                out[p] = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=10
                )
            except KafkaException:
                return None
        return out

    def total(self) -> int | None:
        """Messages in range, estimated from the watermarks (for the progress bar only)."""
        marks = self.watermarks()
        if marks is None:
            return None
        return sum(
            max(0, min(self.end.get(p, high), high) - max(self._position[p], 0))
            for p, (_, high) in marks.items()
        )

    def close(self, timeout_s: float = 10.0) -> None:
        bounded(self._consumer.close, timeout_s, "consumer_close")
