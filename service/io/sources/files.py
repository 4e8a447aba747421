"""Files as a source: Avro files (one alert each, as ZTF's archive, or containers of many records),
from paths, directories and tarballs, and the rows of feature tables (Parquet/CSV in the layout of
:mod:`models.table`), in a deterministic order; a path may be an object-storage URI
(``s3://bucket/prefix``: :mod:`service.io.storage`).

Each file is a stream of its own (``file:<name>``, partition 0): an Avro file is one input at
offset 0 (all its records scored as one unit), a table row is an input at its row index. The
resumable position is the next offset of each file whose outputs are all written.
"""

from __future__ import annotations

import io
import math
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from models.exceptions import DataError
from models.table import AlertTable, read_table
from models.taxonomy import TOP_CLASSES
from service.io import storage
from service.io.sources.kafka import Rebalancing
from service.io.storage import Location
from service.records import Input, Lineage, Partition

FILE_PREFIX = "file:"


def table_records(table: AlertTable, id_field: str = "oid") -> Iterator[dict[str, Any]]:
    """One classifier record per table row, as decoding needs it: the id, the features by name
    (NaN - undefined - as null; infinities stay, and are dead letters as in a stream) and the
    top-level probabilities."""
    names = table.feature_names
    tops = [dict(zip(TOP_CLASSES, p, strict=True)) for p in table.prob_top.tolist()]
    for i in range(len(table)):
        values = table.features[i].tolist()
        yield {
            id_field: str(table.oid[i]),
            "features": {
                n: None if math.isnan(v) else v for n, v in zip(names, values, strict=True)
            },
            "lc_classification": {"hierarchical": {"top": tops[i]}},
        }


def table_inputs(
    stream: str, table: AlertTable, id_field: str = "oid", start: int = 0
) -> Iterator[Input]:
    """A table's rows from ``start`` on as the inputs of ``stream`` (partition 0, offset = row
    index), each holding its classifier record (:func:`table_records`)."""
    for i, record in enumerate(table_records(table, id_field)):
        if i >= start:
            yield Input(Lineage(stream, 0, i, None), None, None, None, [record])


class TableSource:
    """The rows of a table already in memory as one stream (offset = row index): how a batch of
    rows handed over by another engine (a Spark task's, :mod:`service.spark`) is scored."""

    def __init__(self, stream: str, table: AlertTable, id_field: str = "oid") -> None:
        self.stream = stream
        self._table = table
        self._id_field = id_field
        self._inputs: Iterator[Input] | None = None
        self._listener: Rebalancing | None = None
        self._done = 0

    def start(self, listener: Rebalancing) -> None:
        self._listener = listener
        self._inputs = table_inputs(self.stream, self._table, self._id_field)

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        assert self._inputs is not None, "start() first"
        out = [item for _, item in zip(range(max_inputs), self._inputs, strict=False)]
        return out or None

    def commit(self, positions: dict[Partition, int], wait_s: float | None) -> None:
        for offset in positions.values():
            self._done = max(self._done, offset)
        if self._listener is not None:
            self._listener.on_committed(positions)

    def state(self) -> dict[str, Any]:
        return {"files": {self.stream: self._done}}

    def total(self) -> int | None:
        return len(self._table) - self._done

    def close(self, timeout_s: float = 10.0) -> None:
        self._inputs = None


class FileSource:
    """Avro files and table rows (see the module docstring)."""

    def __init__(
        self, paths: list[Location], id_field: str = "oid", resume: dict[str, Any] | None = None
    ) -> None:
        self.paths = paths
        self.id_field = id_field
        for path in paths:
            missing = (
                storage.kind(path) == "missing" if isinstance(path, str) else not path.exists()
            )
            if missing:
                raise DataError(f"{path} does not exist")
        self._done: dict[str, int] = dict((resume or {}).get("files", {}))
        self._inputs: Iterator[Input] | None = None
        self._listener: Rebalancing | None = None

    def start(self, listener: Rebalancing) -> None:
        self._listener = listener
        self._inputs = self._all()

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        assert self._inputs is not None, "start() first"
        out = [item for _, item in zip(range(max_inputs), self._inputs, strict=False)]
        return out or None

    def _all(self) -> Iterator[Input]:
        for name, data, table in self._members():
            stream = f"{FILE_PREFIX}{name}"
            done = self._done.get(stream, 0)
            if table is None:
                if done == 0:
                    yield Input(Lineage(stream, 0, 0, None), None, data)
                continue
            rows = storage.read_alert_table(table) if isinstance(table, str) else read_table(table)
            yield from table_inputs(stream, rows, self.id_field, done)

    def _members(self) -> Iterator[tuple[str, bytes | None, Location | None]]:
        """(name, Avro bytes, or a table path) in a deterministic order."""
        for path in self.paths:
            if isinstance(path, str):
                yield from self._remote(path)
            elif path.is_dir():
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
    def _file(path: Path) -> Iterator[tuple[str, bytes | None, Location | None]]:
        if path.suffix in (".parquet", ".csv"):
            yield str(path), None, path
        else:
            yield str(path), path.read_bytes(), None

    @staticmethod
    def _remote(uri: str) -> Iterator[tuple[str, bytes | None, Location | None]]:
        """The members of a URI as of a local path: a prefix's Avro files and tables, or one
        table, Avro file or tarball."""
        if storage.kind(uri) == "directory":
            for child in storage.files(uri):
                if storage.suffix(child) in (".avro", ".parquet", ".csv"):
                    if storage.suffix(child) == ".avro":
                        yield child, storage.read_bytes(child), None
                    else:
                        yield child, None, child
            return
        if storage.suffix(uri) in (".parquet", ".csv"):
            yield uri, None, uri
            return
        data = storage.read_bytes(uri)
        if not tarfile.is_tarfile(io.BytesIO(data)):
            yield uri, data, None
            return
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile() and member.name.endswith(".avro"):
                    handle = tar.extractfile(member)
                    yield f"{uri}:{member.name}", handle.read() if handle else b"", None

    def commit(self, positions: dict[Partition, int], wait_s: float | None) -> None:
        for (stream, _), offset in positions.items():
            self._done[stream] = max(self._done.get(stream, 0), offset)
        if self._listener is not None:
            self._listener.on_committed(positions)

    def state(self) -> dict[str, Any]:
        return {"files": dict(self._done)}

    def total(self) -> int | None:
        """Inputs to read (files and table rows), for the progress bar; None with tarballs,
        whose index costs a full read."""
        count = 0
        for path in self.paths:
            if isinstance(path, str):
                remote = self._remote_total(path)
                if remote is None:
                    return None
                count += remote
                continue
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
        return count - sum(self._done.values())

    @staticmethod
    def _remote_total(uri: str) -> int | None:
        """The inputs under a URI from Parquet footers; None when a CSV table or a lone
        non-table object (maybe a tarball) would have to be read whole."""
        if storage.kind(uri) != "directory":
            return storage.parquet_rows(uri) if storage.suffix(uri) == ".parquet" else None
        count = 0
        for child in storage.files(uri):
            if storage.suffix(child) == ".parquet":
                count += storage.parquet_rows(child)
            elif storage.suffix(child) == ".avro":
                count += 1
            elif storage.suffix(child) == ".csv":
                return None
        return count

    def close(self, timeout_s: float = 10.0) -> None:
        self._inputs = None
