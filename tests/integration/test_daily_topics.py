"""Daily output topics on a real broker: a replay whose clock passes the change hour (22:00
UTC) mid-way writes its first batches to today's topic and the rest to tomorrow's, each score
once; dead letters follow the same days (the switch with every kind of delivery failure:
tests/unit/test_kafka_sink.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from models.resources import sample_dir
from models.table import read_table
from service.config import KafkaSettings, load_settings
from service.exceptions import InputError
from service.io.kafka import create_topics
from service.io.sinks.kafka import KafkaSink
from service.io.sources.files import FileSource
from service.ops.availability import Brokers
from service.ops.metrics import Metrics
from service.pipeline import Pipeline
from service.records import Input, Lineage, Row, ScoredBatch
from tests.reading import read_all

BATCH = 64
BEFORE_BATCHES = 5  # batches written before the change hour


def test_a_replay_across_the_change_hour_writes_each_score_once_to_its_day(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    formats = {"topic_format": f"{topic_prefix}-scores_%s"}
    formats["dead_letter_topic_format"] = f"{topic_prefix}-dlq_%s"
    days = {"before": "20261231", "after": "20270101"}  # the change hour at a year's end
    topics = {
        when: (f"{topic_prefix}-scores_{day}", f"{topic_prefix}-dlq_{day}")
        for when, day in days.items()
    }
    create_topics(
        KafkaSettings(bootstrap_servers=kafka_bootstrap), [*topics["before"], *topics["after"]]
    )
    settings = load_settings(
        None,
        {
            "model": {"inference": "inline"},
            "kafka": {"bootstrap_servers": kafka_bootstrap},
            "output": {"topic_strategy": "daily", **formats},
        },
    )
    pipeline = Pipeline(settings)
    written: Counter[Lineage] = Counter()

    def on_written(sources: Sequence[Lineage]) -> None:
        written.update(sources)
        pipeline.tracker.written([s for s in sources if s.topic != "bad"])

    switched = [False]  # the clock passes 22:00 UTC after BEFORE_BATCHES batches

    def clock() -> datetime:
        hour, minute = (22, 0) if switched[0] else (21, 59)
        return datetime(2026, 12, 31, hour, minute, tzinfo=UTC)

    sink = KafkaSink(settings, Metrics(), on_written, Brokers(kafka_bootstrap, 120.0), clock)
    sizes: list[int] = []  # rows per batch written, in order
    write = sink.write
    bad = [Input(Lineage("bad", 0, offset, None), b"k", b"not avro", None) for offset in (0, 1)]

    def recording(batch: ScoredBatch, rows: list[Row]) -> None:
        """The sink's write; a dead letter after the first batch on each side of the switch."""
        switched[0] = len(sizes) >= BEFORE_BATCHES
        sizes.append(len(rows))
        write(batch, rows)
        if len(sizes) in (1, BEFORE_BATCHES + 1):
            sink.dead_letter(bad[switched[0]], InputError("undecodable", "bad bytes"))

    sink.write = recording  # type: ignore[method-assign]
    table = sample_dir() / "objects.parquet"
    summary = pipeline.replay(FileSource([table]), sink, BATCH, progress=None)  # closes the sink

    oids = list(read_table(table).oid)
    assert (summary.scored, summary.dead_lettered) == (len(oids), 0)
    assert set(written.values()) == {1}  # every input reported written once
    assert len(written) == len(oids) + 2
    assert len(sizes) > BEFORE_BATCHES
    n_before = sum(sizes[:BEFORE_BATCHES])

    before = [m.key for m in read_all(kafka_bootstrap, topics["before"][0], n_before)]
    after = [m.key for m in read_all(kafka_bootstrap, topics["after"][0], len(oids) - n_before)]
    assert len(before) == n_before
    assert sorted(before + after) == sorted(oid.encode() for oid in oids)  # each once, none lost
    for when, bad_input in zip(("before", "after"), bad, strict=True):
        assert [m.value for m in read_all(kafka_bootstrap, topics[when][1], 1)] == [bad_input.value]
