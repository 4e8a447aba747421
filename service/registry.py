"""The registries of sources and sinks: ``input.kind`` and ``output.kind`` name an entry here, and
the composition root (:mod:`service.pipeline`) makes it from the settings.

A new source or sink is one class (in :mod:`service.io.sources` or :mod:`service.io.sinks`) and
one entry below. Entries import their class only when made, so that the settings can check a
kind against these names without loading Kafka clients or Parquet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from service.config import Settings
    from service.io.sinks import OutputSink
    from service.io.sources import InputSource
    from service.ops.availability import Brokers
    from service.ops.metrics import Metrics
    from service.records import Written

T = TypeVar("T")


@dataclass(frozen=True)
class Wiring:
    """What a source or sink is made from, besides the settings."""

    settings: Settings
    metrics: Metrics
    brokers: Brokers
    written: Written  # the offset tracker's: a sink reports each written output to it
    id_field: str  # the survey's object id field (table rows)
    resume: dict[str, Any]  # a source's state saved by the sink's last checkpoint ({}: afresh)


@dataclass(frozen=True)
class Kind(Generic[T]):
    """One registry entry."""

    make: Callable[[Wiring], T]
    description: str
    live: bool  # usable by the live service (`run`): a consumer group; a sink without checkpoints


def _consumer_group(w: Wiring) -> InputSource:
    from service.io.sources.kafka import KafkaSource

    return KafkaSource(w.settings, w.metrics, w.brokers)


def _topic_range(w: Wiring) -> InputSource:
    from service.config import parse_time_ms
    from service.io.sources.topic_range import TopicRange

    i, kafka = w.settings.input, w.settings.kafka
    return TopicRange(
        {**kafka.librdkafka(), **kafka.consumer},
        i.topics[0],
        i.partitions,
        parse_time_ms(i.since) if i.since else None,
        parse_time_ms(i.until) if i.until else None,
        dict(i.start_offsets),
        dict(i.end_offsets),
        resume=w.resume,
        brokers=w.brokers,
    )


def _files(w: Wiring) -> InputSource:
    from service.io.sources.files import FileSource

    return FileSource(list(w.settings.input.paths), w.id_field, w.resume)


def _topics(w: Wiring) -> OutputSink:
    from service.io.sinks.kafka import KafkaSink

    return KafkaSink(w.settings, w.metrics, w.written, w.brokers)


def _parquet(w: Wiring) -> OutputSink:
    from service.io.sinks.files import ParquetSink

    o = w.settings.output
    assert o.path is not None  # checked by the settings
    return ParquetSink(o.path, input_description(w.settings), o.resume, w.written)


def _memory(w: Wiring) -> OutputSink:
    from service.io.sinks.files import CollectingSink

    return CollectingSink(w.written)


SOURCES: dict[str, Kind[InputSource]] = {
    "kafka": Kind(_consumer_group, "the input topics as a member of input.group_id", True),
    "topic_range": Kind(
        _topic_range,
        "a bounded range of input.topics[0] (input.partitions, since/until, start/end offsets), "
        "read without joining a group",
        False,
    ),
    "files": Kind(
        _files,
        "input.paths: Avro alert files, containers, directories, tarballs, Parquet/CSV tables",
        False,
    ),
}
SINKS: dict[str, Kind[OutputSink]] = {
    "kafka": Kind(
        _topics,
        "output.topic and output.dead_letter_topic, or a topic a day (output.topic_strategy daily)",
        True,
    ),
    "parquet": Kind(
        _parquet,
        "a resumable Parquet dataset directory at output.path (scores and dead-letter parts)",
        False,
    ),
    "memory": Kind(_memory, "kept in memory by the command (score, top)", False),
}


def input_description(settings: Settings) -> dict[str, Any]:
    """What a bounded source reads, as JSON: a resumed Parquet replay must read the same."""
    i = settings.input
    if i.kind == "files":
        return {"kind": "files", "paths": [str(p) for p in i.paths]}
    return {
        "kind": i.kind,
        "topic": i.topics[0] if i.topics else None,
        "partitions": i.partitions,
        "since": i.since,
        "until": i.until,
        "start": [[p, o] for p, o in sorted(i.start_offsets.items())],
        "end": [[p, o] for p, o in sorted(i.end_offsets.items())],
    }
