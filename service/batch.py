"""Scoring a dataset partition by partition (``alert-anomaly batch``): the planning of the
partitions, what a worker does with one, and the output's layout. Nothing here imports Dask: the
command (:mod:`service.commands.batch`) hands :func:`score_partition` to a cluster's workers.

An input partition is a range of row groups of one Parquet table (in :mod:`models.table`'s
layout), of at most about ``partition_rows`` rows (a whole file when it is smaller). A worker
scores it with the pipeline of ``score`` (:meth:`service.pipeline.Pipeline.replay`, the same
processor): the rows are read ``read_rows`` at a time (:class:`PartitionSource`), so a worker
holds one row group's columns, one read batch of records and one engine batch at a time, whatever
the partition's size. Each row keeps the lineage ``score`` gives it (``file:<table>``, its row
index in the file), so its score record is the one ``score`` writes for that row.

The output (a directory or ``s3://`` prefix) holds ``scores/<name>.parquet``,
``dead-letters/<name>.parquet`` (only when some row was dead-lettered) and ``_done/<name>.json``,
the partition's marker, written after its parts (atomically: a rename, or one PUT on S3). A
partition counts as done only with its marker; a rerun skips those and redoes the others
(overwriting their parts), so a crash loses nothing and writes nothing twice.

Over 300 lines on purpose: what a partition is - its planning, the worker's source and sink, its
marker and the reading of the output - is one unit, kept in one place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from models.exceptions import DataError
from models.table import table_from_arrow
from service.config import Settings
from service.core.processing import AlertProcessor
from service.exceptions import InputError
from service.io import storage
from service.io.codecs.scores import score_columns
from service.io.sinks import WrittenAtOnce
from service.io.sinks.envelope import dead_letter_row
from service.io.sinks.files import DEAD_LETTER_COLUMNS
from service.io.sources.files import FILE_PREFIX, table_records
from service.io.storage import Location
from service.records import Input, Lineage, Partition, Row, ScoredBatch, Written

READ_ROWS = 10_000  # rows read from a table at a time (a worker's read batch)
PARTITION_ROWS = 1_000_000  # rows of an input partition, at row-group boundaries
SCORES, DEAD_LETTERS, DONE = "scores", "dead-letters", "_done"
BATCH = "_batch.json"  # what the output holds the scores of


@dataclass(frozen=True)
class InputPartition:
    """Row groups ``first``..``last`` (inclusive) of ``table``: rows ``start``..``stop``."""

    name: str
    table: str  # a local path or a URI, as ``score`` names it
    first: int
    last: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class PartitionResult:
    """What a worker did with a partition (also its marker's content)."""

    name: str
    read: int
    scored: int
    dead_lettered: int
    seconds: float
    peak_rss_mb: float  # the worker process's peak resident memory so far


def _open(table: str) -> pq.ParquetFile:
    if storage.is_uri(table):
        filesystem, path = storage.resolve(table)
        with storage.reporting(table):
            return pq.ParquetFile(filesystem.open_input_file(path))
    return pq.ParquetFile(table)


def _tables(root: Location) -> list[tuple[str, str]]:
    """(name, table) of every Parquet table under ``root`` (or ``root`` itself), sorted; the
    name is the table's path under ``root`` without its suffix, ``/`` as ``.``."""
    if isinstance(root, str):
        if storage.kind(root) != "directory":
            found = [root]
            base = root.rsplit("/", 1)[0]
        else:
            found = [f for f in storage.files(root) if storage.suffix(f) == ".parquet"]
            base = root.rstrip("/")
        names = [f[len(base) + 1 :] for f in found]
    elif root.is_dir():
        paths = sorted(p for p in root.rglob("*.parquet") if p.is_file())
        found, names = [str(p) for p in paths], [str(p.relative_to(root)) for p in paths]
    else:
        if not root.exists():
            raise DataError(f"{root} does not exist")
        found, names = [str(root)], [root.name]
    if not found:
        raise DataError(f"{root} holds no Parquet tables")
    pairs = zip(names, found, strict=True)
    return [(n.removesuffix(".parquet").replace("/", "."), f) for n, f in pairs]


def plan(root: Location, partition_rows: int = PARTITION_ROWS) -> list[InputPartition]:
    """The input partitions of the tables under ``root``, in order (see the module docstring)."""
    out: list[InputPartition] = []
    for name, table in _tables(root):
        meta = _open(table).metadata
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        ranges: list[tuple[int, int, int, int]] = []
        first, start, rows = 0, 0, 0
        for i, n in enumerate(groups):
            rows += n
            if rows >= partition_rows or i == len(groups) - 1:
                ranges.append((first, i, start, start + rows))
                first, start, rows = i + 1, start + rows, 0
        for first, last, begin, end in ranges:
            label = name if len(ranges) == 1 else f"{name}.rows-{begin}-{end}"
            out.append(InputPartition(label, table, first, last, begin, end))
    return out


class PartitionSource:
    """The rows of one input partition, read ``read_rows`` at a time, with ``score``'s lineage
    (``file:<table>``, partition 0, the row's index in the file)."""

    def __init__(self, part: InputPartition, id_field: str, read_rows: int = READ_ROWS) -> None:
        self.part, self.id_field, self.read_rows = part, id_field, read_rows
        self._inputs: Iterator[Input] | None = None

    def start(self, listener: Any) -> None:
        self._inputs = self._all()

    def _all(self) -> Iterator[Input]:
        stream, offset = f"{FILE_PREFIX}{self.part.table}", self.part.start
        reader = _open(self.part.table)
        # a row group at a time: a reader of several row groups keeps every one it has read
        batches = (
            batch
            for group in range(self.part.first, self.part.last + 1)
            for batch in reader.iter_batches(self.read_rows, row_groups=[group])
        )
        for batch in batches:
            rows = table_from_arrow(pa.Table.from_batches([batch]), self.part.table)
            for record in table_records(rows, self.id_field):
                yield Input(Lineage(stream, 0, offset, None), None, None, None, [record])
                offset += 1

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        assert self._inputs is not None, "start() first"
        out = [item for _, item in zip(range(max_inputs), self._inputs, strict=False)]
        return out or None

    def commit(self, positions: dict[Partition, int], wait_s: float | None) -> None:
        """The marker is the partition's only commit."""

    def state(self) -> dict[str, Any]:
        return {}

    def total(self) -> int | None:
        return self.part.rows

    def close(self, timeout_s: float = 10.0) -> None:
        self._inputs = None


class PartSink(WrittenAtOnce):
    """A partition's scores and dead letters streamed into its two Parquet parts (each opened
    at its first row); they count once :func:`score_partition` writes the marker."""

    def __init__(self, out: Location, name: str, on_written: Written) -> None:
        self.out, self.name, self.on_written = out, name, on_written
        self._writers: dict[str, pq.ParquetWriter] = {}

    def _writer(self, kind: str, schema: pa.Schema) -> pq.ParquetWriter:
        if kind not in self._writers:
            where = _join(self.out, kind, f"{self.name}.parquet")
            if isinstance(where, str):
                filesystem, path = storage.resolve(where)
                with storage.reporting(where):
                    writer = pq.ParquetWriter(path, schema, filesystem=filesystem)
            else:
                where.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(where, schema, compression="zstd")
            self._writers[kind] = writer
        return self._writers[kind]

    def write(self, batch: ScoredBatch, rows: list[Row]) -> None:
        n, schema = len(rows), score_columns()
        arrays = {
            f.name: value if isinstance(value := batch.columns[f.name], list) else [value] * n
            for f in schema
        }
        self._writer(SCORES, schema).write_table(pa.Table.from_pydict(arrays, schema=schema))
        self.on_written([row.source for row in rows])

    def dead_letter(self, item: Input, error: InputError) -> None:
        row = pa.Table.from_pylist([dead_letter_row(item, error)], DEAD_LETTER_COLUMNS)
        self._writer(DEAD_LETTERS, DEAD_LETTER_COLUMNS).write_table(row)
        self.on_written((item.source,))

    def close(self, timeout_s: float = 10.0) -> None:
        """Complete the parts (on S3: the uploads end here)."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            writer.close()


def _join(out: Location, *names: str) -> Location:
    return storage.join(out, "/".join(names)) if isinstance(out, str) else out.joinpath(*names)


def done(out: Location) -> set[str]:
    """The names of the partitions whose marker is in ``out``."""
    if isinstance(out, str):
        prefix = storage.join(out, DONE) + "/"
        if storage.kind(out) != "directory":
            return set()
        names = [f[len(prefix) :] for f in storage.files(out) if f.startswith(prefix)]
    else:
        folder = out / DONE
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    return {n.removesuffix(".json") for n in names if n.endswith(".json")}


def _mark(out: Location, result: PartitionResult) -> None:
    """The partition's marker, after its parts: a rename locally, one PUT on S3."""
    data = json.dumps(asdict(result)).encode()
    where = _join(out, DONE, f"{result.name}.json")
    if isinstance(where, str):
        storage.put(where, data)
        return
    where.parent.mkdir(parents=True, exist_ok=True)
    temporary = where.with_name(f".{where.name}.tmp")
    with open(temporary, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    temporary.replace(where)


def claim(out: Location, description: dict[str, Any]) -> None:
    """Record what ``out`` holds the scores of (``_batch.json``: the input and the model
    settings) or, when it holds another run's, raise DataError: its markers are not ours."""
    data = json.dumps(description, sort_keys=True)
    where = _join(out, BATCH)
    if isinstance(where, str):
        saved = storage.read_text(where)
    else:
        saved = where.read_text() if where.is_file() else None
    if saved is not None:
        if json.loads(saved) != json.loads(data):
            raise DataError(f"{out} holds the scores of another input or model: use another --out")
        return
    if isinstance(where, str):
        storage.put(where, data.encode())
    else:
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(data)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (ru_maxrss: KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_PROCESSORS: dict[str, AlertProcessor] = {}
_LOGS: dict[str, tuple[Any, str]] = {}


def _processor(settings: Settings) -> AlertProcessor:
    """The processor of these settings, made once per worker process (its models loaded)."""
    key = settings.model_dump_json()
    if key not in _PROCESSORS:
        _PROCESSORS.clear()
        _PROCESSORS[key] = AlertProcessor(settings)
    return _PROCESSORS[key]


def score_partition(
    part: InputPartition,
    settings: Settings,
    out: Location,
    read_rows: int = READ_ROWS,
    logs: tuple[Any, str] | None = None,
) -> PartitionResult:
    """Score ``part`` into its parts in ``out`` and write its marker (runs on a worker; ``logs``:
    the command's log format and level, set up once per worker process)."""
    return score_source(
        part.name, lambda id_field: PartitionSource(part, id_field, read_rows), settings, out, logs
    )


def score_source(
    name: str,
    source: Any,
    settings: Settings,
    out: Location,
    logs: tuple[Any, str] | None = None,
) -> PartitionResult:
    """Score the rows of ``source(id_field)`` (a source of partition ``name``) with the pipeline
    of ``score`` into the partition's parts in ``out``, then write its marker (on a worker)."""
    from service.ops.logs import configure_logging
    from service.pipeline import Pipeline

    if logs is not None and logs != _LOGS.get("set"):
        configure_logging(*logs)
        _LOGS["set"] = logs

    pipeline = Pipeline(settings, processor=_processor(settings))
    id_field = pipeline.processor.survey.id_fields[0]
    sink = PartSink(out, name, pipeline.tracker.written)
    try:
        summary = pipeline.replay(source(id_field), sink, progress=None)
    finally:
        sink.close()
    result = PartitionResult(
        name,
        summary.read,
        summary.scored,
        summary.dead_lettered,
        round(summary.seconds, 3),
        round(peak_rss_mb(), 1),
    )
    _mark(out, result)
    return result


def read_output(out: Location, kind: str = SCORES) -> pa.Table:
    """The scores (or ``dead-letters``) of the partitions done, in partition-name order."""
    schema = score_columns() if kind == SCORES else DEAD_LETTER_COLUMNS
    tables = []
    for name in sorted(done(out)):
        where = _join(out, kind, f"{name}.parquet")
        if isinstance(where, str):
            if storage.kind(where) == "missing":
                continue
            tables.append(storage.read_arrow(where))
        elif where.is_file():
            tables.append(pq.read_table(where))
    return pa.concat_tables(tables) if tables else schema.empty_table()
