"""Reading a topic back in tests with an independent client (kafka-python), so that what the
service wrote is checked by a client other than the one that wrote it."""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition


def read_all(
    bootstrap: str,
    topic: str,
    at_least: int = 0,
    quiet_s: float = 2.0,
    timeout_s: float = 120.0,
) -> list[Any]:
    """Every message of ``topic`` from the beginning of each partition: read until ``at_least``
    came and then none for ``quiet_s`` (a duplicate or a stray message would show), or until
    ``timeout_s``. Watermarks are not used: the embedded broker's are not trusted."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or {0}
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        messages: list[Any] = []
        deadline, quiet_until = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            got = [m for ms in consumer.poll(timeout_ms=300).values() for m in ms]
            messages += got
            if got or len(messages) < at_least:
                quiet_until = None
            elif quiet_until is None:
                quiet_until = time.monotonic() + quiet_s
            elif time.monotonic() >= quiet_until:
                break
        return messages
    finally:
        consumer.close()
