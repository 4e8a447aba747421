"""Replays and offline scoring with the live service's code path (:mod:`service.processing`).

Sources yield *units* - a topic message, an Avro file, a table row - each with its lineage
(:class:`Source`). Bad units are dead letters (to a topic, or a Parquet file next to the scores),
never fatal. Sinks write the anomaly-score records to a topic or to a Parquet dataset directory
whose checkpoint (``_progress.json``) makes an interrupted replay resumable without duplicates or
gaps: scores are written in parts, and a part counts only once the checkpoint that names it
is in place (written atomically after the part).
"""

from __future__ import annotations

import json
import os
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from tqdm import tqdm

from models.exceptions import DataError
from models.simulate.alerts import input_records
from models.table import read_table
from service import __version__
from service.codec import Encoder, make_decoder
from service.config import ClientConfig
from service.exceptions import InputError, KafkaServiceError
from service.inference import InlineInference
from service.processing import AlertProcessor, Inference, dead_letter_headers
from service.routing import Row, Source

log = structlog.get_logger(__name__)

CHECKPOINT = "_progress.json"
SCORE_COLUMNS = pa.schema(
    [
        ("oid", pa.string()),
        ("survey", pa.string()),
        ("top_class", pa.string()),
        ("top_class_probability", pa.float32()),
        ("scorer", pa.string()),
        ("score", pa.float32()),
        ("percentile", pa.float32()),
        ("nearest_subclass", pa.string()),
        ("model_version", pa.string()),
        ("model_checksum", pa.string()),
        ("scored_at", pa.timestamp("ms", tz="UTC")),
        ("source_topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("source_timestamp", pa.timestamp("ms", tz="UTC")),
        ("service_version", pa.string()),
        ("feature_coverage", pa.float32()),
    ]
)
DEAD_LETTER_COLUMNS = pa.schema(
    [
        ("source_topic", pa.string()),
        ("source_partition", pa.int32()),
        ("source_offset", pa.int64()),
        ("reason", pa.string()),
        ("error", pa.string()),
        ("value", pa.binary()),
    ]
)


@dataclass
class Unit:
    """One input: message bytes to decode, or already decoded records (tables)."""

    source: Source
    value: bytes | None = None
    records: list[Any] | None = None
    key: bytes | None = None


@dataclass
class Summary:
    read: int = 0
    scored: int = 0
    dead_lettered: int = 0
    skipped: list[str] = field(default_factory=list)  # names of units that could not be read
    seconds: float = 0.0


class ReplaySource(Protocol):
    """Units in a deterministic order, and the resumable position after each."""

    def units(self, resume: dict[str, Any] | None) -> Iterator[tuple[Unit, dict[str, Any]]]: ...

    def describe(self) -> dict[str, Any]: ...

    def total(self) -> int | None: ...


# -- sources -------------------------------------------------------------------------------


def parse_time_ms(text: str) -> int:
    """ISO-8601 (UTC if no zone) or epoch milliseconds -> epoch milliseconds."""
    from datetime import UTC, datetime

    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"cannot read {text!r} as a time (ISO-8601 or epoch ms)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


class TopicRange:
    """A bounded range of a topic, read with assign() (no group membership, no commits).

    Start: explicit offsets, else the offset ``offsets_for_times`` gives for ``since`` (only an
    optimisation: brokers may answer earlier offsets), else the beginning. End: explicit end
    offsets (exclusive), else the end of the partition when it is reached. Messages whose
    timestamp is outside [since, until) are skipped, so the boundaries are exact.
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
    ) -> None:
        self.topic = topic
        self.since_ms, self.until_ms = since_ms, until_ms
        self._consumer = Consumer(
            {
                **client,
                "group.id": f"alert-anomaly-replay-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=30)
        known = metadata.topics.get(topic)
        if known is None or known.error is not None or not known.partitions:
            raise KafkaServiceError(f"topic {topic!r} does not exist")
        available = sorted(known.partitions)
        self.partitions = partitions or available
        unknown = sorted(set(self.partitions) - set(available))
        if unknown:
            raise KafkaServiceError(f"topic {topic!r} has no partitions {unknown}")
        self.start = self._start_offsets(start_offsets or {})
        self.end = dict(end_offsets or {})

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

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "topic",
            "topic": self.topic,
            "partitions": self.partitions,
            "since_ms": self.since_ms,
            "until_ms": self.until_ms,
            "end": {str(p): o for p, o in self.end.items()},
        }

    def total(self) -> int | None:
        """Messages in range, estimated from the watermarks (for the progress bar only)."""
        total = 0
        for p in self.partitions:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=10
                )
            except KafkaException:
                return None
            total += max(0, min(self.end.get(p, high), high) - max(self.start[p], 0))
        return total

    def units(self, resume: dict[str, Any] | None) -> Iterator[tuple[Unit, dict[str, Any]]]:
        position = {p: self.start[p] for p in self.partitions}
        for key, offset in (resume or {}).items():
            position[int(key)] = max(position.get(int(key), 0), int(offset))
        active = {
            p
            for p in self.partitions
            if position[p] >= 0 and (p not in self.end or position[p] < self.end[p])
        }
        if not active:
            return
        self._consumer.assign([TopicPartition(self.topic, p, position[p]) for p in active])
        try:
            while active:
                for message in self._consumer.consume(500, 1.0):
                    p = message.partition()
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            active.discard(p)
                            continue
                        raise KafkaServiceError(f"replay read failed: {error}", topic=self.topic)
                    assert p is not None
                    offset = message.offset()
                    assert offset is not None
                    if p not in active:
                        continue
                    if p in self.end and offset >= self.end[p]:
                        active.discard(p)
                        continue
                    position[p] = offset + 1
                    state = {str(k): v for k, v in position.items()}
                    kind, ts = message.timestamp()
                    timestamp = ts if kind != 0 and ts >= 0 else None
                    if not self._in_time_range(timestamp):
                        yield Unit(Source(self.topic, p, offset, timestamp)), state
                        continue
                    unit = Unit(
                        Source(self.topic, p, offset, timestamp),
                        message.value(),
                        None,
                        message.key(),
                    )
                    yield unit, state
        finally:
            self._consumer.close()

    def _in_time_range(self, timestamp: int | None) -> bool:
        if self.since_ms is None and self.until_ms is None:
            return True
        if timestamp is None:
            return False
        if self.since_ms is not None and timestamp < self.since_ms:
            return False
        return self.until_ms is None or timestamp < self.until_ms


class FileSource:
    """Avro files (one alert each, as ZTF's archive, or containers of many records) from paths,
    directories and tarballs, in sorted order; or the rows of feature tables (Parquet/CSV in the
    simulator's layout). The resumable position is the number of units done."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        for path in paths:
            if not path.exists():
                raise DataError(f"{path} does not exist")

    def describe(self) -> dict[str, Any]:
        return {"kind": "files", "paths": [str(p) for p in self.paths]}

    def total(self) -> int | None:
        """Units to read (files and table rows), for the progress bar; None with tarballs,
        whose index costs a full read."""
        count = 0
        for path in self.paths:
            if not path.is_dir() and tarfile.is_tarfile(path):
                return None
            files = sorted(path.rglob("*")) if path.is_dir() else [path]
            for file in files:
                if file.suffix == ".parquet":
                    count += pq.ParquetFile(file).metadata.num_rows
                elif file.suffix == ".csv":
                    with open(file, "rb") as fh:
                        count += max(0, sum(1 for _ in fh) - 1)
                elif file.is_file() and (file.suffix == ".avro" or file == path):
                    count += 1
        return count

    def _members(self) -> Iterator[tuple[str, bytes | None, Path | None]]:
        """(name, Avro bytes, or a table path) in a deterministic order."""
        for path in self.paths:
            if path.is_dir():
                for child in sorted(path.rglob("*")):
                    if child.is_file() and child.suffix in (".avro", ".parquet", ".csv"):
                        yield from self._file(child)
            elif tarfile.is_tarfile(path):
                with tarfile.open(path) as tar:
                    for member in sorted(tar.getmembers(), key=lambda m: m.name):
                        if member.isfile() and member.name.endswith(".avro"):
                            handle = tar.extractfile(member)
                            data = handle.read() if handle else b""
                            yield f"{path.name}:{member.name}", data, None
            else:
                yield from self._file(path)

    @staticmethod
    def _file(path: Path) -> Iterator[tuple[str, bytes | None, Path | None]]:
        if path.suffix in (".parquet", ".csv"):
            yield str(path), None, path
        else:
            yield str(path), path.read_bytes(), None

    def units(self, resume: dict[str, Any] | None) -> Iterator[tuple[Unit, dict[str, Any]]]:
        done = int((resume or {}).get("units", 0))
        index = 0
        for name, data, table_path in self._members():
            if table_path is not None:
                for unit in self._table_units(name, table_path):
                    index += 1
                    if index > done:
                        yield unit, {"units": index}
                continue
            index += 1
            if index > done:
                yield Unit(Source(f"file:{name}", 0, 0, None), data), {"units": index}

    @staticmethod
    def _table_units(name: str, path: Path) -> Iterator[Unit]:
        table = read_table(path)
        for i, record in enumerate(input_records(table)):
            yield Unit(Source(f"file:{name}", 0, i, None), None, [record])


# -- sinks ---------------------------------------------------------------------------------


class Sink(Protocol):
    def write(self, records: list[dict[str, Any]]) -> None: ...

    def dead_letter(self, unit: Unit, error: InputError) -> None: ...

    def checkpoint(self, state: dict[str, Any], summary: Summary) -> None: ...

    def close(self) -> None: ...


class TopicSink:
    """Scores to a topic, dead letters to a dead-letter topic; waits for every delivery."""

    def __init__(self, client: ClientConfig, topic: str, dead_letter_topic: str, encode: Encoder):
        self.topic, self.dead_letter_topic, self.encode = topic, dead_letter_topic, encode
        self._producer = Producer({**client, "acks": "all", "enable.idempotence": True})
        self._failures: list[str] = []

    def _delivered(self, error: KafkaError | None, _: Any) -> None:
        if error is not None:
            self._failures.append(str(error))

    def _produce(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=self._delivered
                )
                return
            except BufferError:
                self._producer.poll(0.1)

    def write(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._produce(self.topic, str(record["oid"]).encode(), self.encode(record))
        self._producer.poll(0)

    def dead_letter(self, unit: Unit, error: InputError) -> None:
        headers = dead_letter_headers(unit.source, error)
        self._produce(self.dead_letter_topic, unit.key, unit.value, headers)

    def checkpoint(self, state: dict[str, Any], summary: Summary) -> None:
        self._producer.poll(0)

    def close(self) -> None:
        remaining = self._producer.flush(120)
        if remaining or self._failures:
            raise KafkaServiceError(
                f"{remaining} outputs undelivered, failures: {self._failures[:3]}",
                topic=self.topic,
            )


class ParquetSink:
    """A Parquet dataset directory: part-NNNNN.parquet scores, _dead-letters-NNNNN.parquet,
    and the checkpoint that makes it resumable."""

    def __init__(self, directory: Path, description: dict[str, Any], resume: bool) -> None:
        self.directory = directory
        self.description = description
        self._scores: list[dict[str, Any]] = []
        self._dead: list[dict[str, Any]] = []
        self.state: dict[str, Any] | None = None
        self.parts: list[str] = []
        self.previous = Summary()
        path = directory / CHECKPOINT
        if path.is_file():
            if not resume:
                raise DataError(f"{directory} holds an earlier replay: add --resume or remove it")
            saved = json.loads(path.read_text())
            if saved["input"] != description:
                raise DataError(
                    f"{directory} holds a replay of another input ({saved['input']}): "
                    "use another --out"
                )
            self.state, self.parts = saved["state"], saved["parts"]
            self.previous = Summary(**saved["summary"])
            for stray in directory.glob("*.parquet"):  # written after the last checkpoint
                if stray.name not in self.parts:
                    stray.unlink()
        elif directory.exists() and any(directory.iterdir()):
            raise DataError(f"{directory} exists and is not a replay output: use another --out")
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, records: list[dict[str, Any]]) -> None:
        self._scores.extend(records)

    def dead_letter(self, unit: Unit, error: InputError) -> None:
        self._dead.append(
            {
                "source_topic": unit.source.topic,
                "source_partition": unit.source.partition,
                "source_offset": unit.source.offset,
                "reason": error.reason,
                "error": str(error),
                "value": unit.value,
            }
        )

    def _write_part(self, prefix: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        name = f"{prefix}-{len(self.parts):05d}.parquet"
        table = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(table, self.directory / name, compression="zstd")
        self.parts.append(name)

    def checkpoint(self, state: dict[str, Any], summary: Summary) -> None:
        if self._scores:
            self._write_part("part", self._scores, SCORE_COLUMNS)
        if self._dead:
            self._write_part(
                "_dead-letters", self._dead, DEAD_LETTER_COLUMNS
            )  # "_": not a score part
        self._scores, self._dead = [], []
        total = Summary(
            read=self.previous.read + summary.read,
            scored=self.previous.scored + summary.scored,
            dead_lettered=self.previous.dead_lettered + summary.dead_lettered,
            skipped=self.previous.skipped + summary.skipped,
            seconds=self.previous.seconds + summary.seconds,
        )
        content = {
            "input": self.description,
            "state": state,
            "parts": self.parts,
            "summary": total.__dict__,
            "service_version": __version__,
        }
        temporary = self.directory / f"{CHECKPOINT}.tmp"
        with open(temporary, "w") as fh:
            json.dump(content, fh)
            fh.flush()
            os.fsync(fh.fileno())
        temporary.replace(self.directory / CHECKPOINT)

    def close(self) -> None:
        pass


def read_scores(directory: Path) -> pa.Table:
    """The scores of a Parquet replay output, in replay order (checkpointed parts only)."""
    saved = json.loads((directory / CHECKPOINT).read_text())
    parts = [pq.read_table(directory / p) for p in saved["parts"] if p.startswith("part-")]
    return pa.concat_tables(parts) if parts else SCORE_COLUMNS.empty_table()


def write_scores_file(records: list[dict[str, Any]], path: Path) -> None:
    """Scores as one Parquet or CSV file (``alert-anomaly score``)."""
    table = pa.Table.from_pylist(records, schema=SCORE_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path, compression="zstd")


# -- the replay loop -----------------------------------------------------------------------


def replay(
    processor: AlertProcessor,
    source: ReplaySource,
    sink: Sink,
    resume_state: dict[str, Any] | None = None,
    batch_rows: int = 1024,
    checkpoint_every: int = 5000,
    progress: bool = True,
    inference: Inference | None = None,
) -> Summary:
    """Score every unit of the source into the sink; checkpoints every ``checkpoint_every``
    units and at the end. Bad units are dead letters; unreadable files are skipped by name.
    Batches are scored by ``inference`` (for batches of ``batch_rows``; default: in this
    thread) while the next ones are read; a checkpoint waits until all are written."""
    summary = Summary()
    started = time.monotonic()
    pending: dict[str, list[Row]] = {}
    container = make_decoder("container")
    state: dict[str, Any] = dict(resume_state or {})
    since_checkpoint = 0

    messages: list[Unit] = []  # topic messages, decoded together (service.batchdecode)

    scorer = inference or InlineInference({t: r.scorer for t, r in processor.routes.items()})

    def write(wait_s: float = 0.0) -> None:
        for s in scorer.completed(wait_s):
            batch = processor.scored_batch(s.top, s.tag, s.raw, s.percentile, s.nearest, s.seconds)
            sink.write(batch.records)
            summary.scored += len(s.tag)

    def flush(top: str) -> None:
        rows = pending.pop(top, [])
        if rows:
            scorer.submit(top, [row.features for row in rows], rows)
            write()

    def flush_all() -> None:
        decode_messages()
        for top in list(pending):
            flush(top)
        while scorer.pending():
            write(0.1)

    def take(unit: Unit, result: list[tuple[str, Row]] | InputError) -> None:
        if isinstance(result, InputError):
            summary.dead_lettered += 1
            if unit.source.topic.startswith("file:") and unit.records is None:
                summary.skipped.append(unit.source.topic[len("file:") :])
                log.warning("file_skipped", file=unit.source.topic[5:], error=str(result))
            sink.dead_letter(unit, result)
            return
        for top, row in result:
            pending.setdefault(top, []).append(row)
            if len(pending[top]) >= batch_rows:
                flush(top)

    def decode_messages() -> None:
        values, sources = [m.value for m in messages], [m.source for m in messages]
        for message, result in zip(messages, processor.rows_many(values, sources), strict=True):
            take(message, result)
        messages.clear()

    bar = tqdm(total=source.total(), unit="msg", disable=not progress, desc="replay")
    try:
        for unit, state in source.units(resume_state):
            summary.read += 1
            bar.update(1)
            if unit.value is None and unit.records is None:
                pass  # outside the time range: read, not scored
            elif unit.records is None and not unit.source.topic.startswith("file:"):
                messages.append(unit)
                if len(messages) >= batch_rows:
                    decode_messages()
            else:
                try:
                    if unit.records is not None:
                        result = processor.rows_from_records(unit.records, unit.source)
                    else:
                        result = processor.rows_from_records(
                            container(unit.value or b""), unit.source
                        )
                except InputError as exc:
                    take(unit, exc)
                else:
                    take(unit, result)
            since_checkpoint += 1
            if since_checkpoint >= checkpoint_every:
                flush_all()
                summary.seconds = time.monotonic() - started
                sink.checkpoint(state, summary)
                since_checkpoint = 0
        flush_all()
        summary.seconds = time.monotonic() - started
        sink.checkpoint(state, summary)
    finally:
        bar.close()
    sink.close()
    return summary
