"""Scores to files or memory: a resumable Parquet dataset directory (replays) and a collecting
sink (offline scoring, ``top``; ``score`` writes the dead letters beside its scores).

A Parquet dataset holds ``part-NNNNN.parquet`` scores, ``_dead-letters-NNNNN.parquet`` and the
checkpoint ``_progress.json``: buffered outputs are written as parts at each flush, and a part
counts only once the checkpoint that names it is in place (written atomically after the part),
so an interrupted replay resumes without duplicates or gaps. The directory may be an
object-storage URI (``s3://bucket/prefix``: :mod:`service.io.storage`): S3 has no rename, so the
checkpoint is written as one PUT of the whole object (readers see the old or the new one).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from models.exceptions import DataError
from service import __version__
from service.exceptions import InputError
from service.io import storage
from service.io.codecs.scores import score_columns
from service.io.sinks import WrittenAtOnce
from service.io.sinks.envelope import dead_letter_row
from service.io.storage import Location
from service.records import Input, Lineage, Row, ScoredBatch, Written, records_of

CHECKPOINT = "_progress.json"
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


class ParquetSink:
    """A resumable Parquet dataset directory (see the module docstring)."""

    outputs_per_row = 1
    keeps_inputs = False

    def __init__(
        self, directory: Location, description: dict[str, Any], resume: bool, on_written: Written
    ) -> None:
        self.directory = directory
        self.description = description
        self.on_written = on_written
        self._scores: list[pa.Table] = []
        self._dead: list[dict[str, Any]] = []
        self._pending: list[Lineage] = []  # outputs buffered, told written after their part
        self.saved: dict[str, Any] = {}  # the state of the checkpoint resumed from
        self.parts: list[str] = []
        if isinstance(directory, str):
            self._open_remote(directory, resume)
            return
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
            self.saved, self.parts = saved["state"], saved["parts"]
            for stray in directory.glob("*.parquet"):  # written after the last checkpoint
                if stray.name not in self.parts:
                    stray.unlink()
        elif directory.exists() and any(directory.iterdir()):
            raise DataError(f"{directory} exists and is not a replay output: use another --out")
        directory.mkdir(parents=True, exist_ok=True)

    def _open_remote(self, uri: str, resume: bool) -> None:
        """The checks and clean-up of ``__init__`` on object storage."""
        text = storage.read_text(storage.join(uri, CHECKPOINT))
        present = _top_level(uri, storage.files(uri))  # a missing bucket fails here
        if text is None:
            if present:
                raise DataError(f"{uri} exists and is not a replay output: use another --out")
            return
        if not resume:
            raise DataError(f"{uri} holds an earlier replay: add --resume or remove it")
        saved = json.loads(text)
        if saved["input"] != self.description:
            raise DataError(
                f"{uri} holds a replay of another input ({saved['input']}): use another --out"
            )
        self.saved, self.parts = saved["state"], saved["parts"]
        for stray in present:  # written after the last checkpoint
            if stray.endswith(".parquet") and stray not in self.parts:
                storage.delete(storage.join(uri, stray))

    def write(self, batch: ScoredBatch, rows: list[Row]) -> None:
        columns = dict(batch.columns)
        n = len(rows)
        arrays = {
            f.name: columns[f.name] if isinstance(columns[f.name], list) else [columns[f.name]] * n
            for f in score_columns()
        }
        self._scores.append(pa.Table.from_pydict(arrays, schema=score_columns()))
        self._pending += [row.source for row in rows]

    def dead_letter(self, item: Input, error: InputError) -> None:
        self._dead.append(dead_letter_row(item, error))
        self._pending.append(item.source)

    def poll(self, timeout_s: float) -> None:
        """Parts are written at flush."""

    def flush(self, timeout_s: float) -> None:
        if self._scores:
            self._write_part("part", pa.concat_tables(self._scores))
        if self._dead:  # "_": not a score part
            self._write_part("_dead-letters", pa.Table.from_pylist(self._dead, DEAD_LETTER_COLUMNS))
        self._scores, self._dead = [], []
        pending, self._pending = self._pending, []
        self.on_written(pending)

    def _write_part(self, prefix: str, table: pa.Table) -> None:
        name = f"{prefix}-{len(self.parts):05d}.parquet"
        if isinstance(self.directory, str):
            storage.write_parquet(table, storage.join(self.directory, name))
        else:
            pq.write_table(table, self.directory / name, compression="zstd")
        self.parts.append(name)

    def checkpoint(self, state: dict[str, Any]) -> None:
        content = {
            "input": self.description,
            "state": state,
            "parts": self.parts,
            "service_version": __version__,
        }
        if isinstance(self.directory, str):  # one PUT: the old checkpoint or the new one
            storage.put(storage.join(self.directory, CHECKPOINT), json.dumps(content).encode())
            return
        temporary = self.directory / f"{CHECKPOINT}.tmp"
        with open(temporary, "w") as fh:
            json.dump(content, fh)
            fh.flush()
            os.fsync(fh.fileno())
        temporary.replace(self.directory / CHECKPOINT)

    def resumed(self) -> dict[str, Any]:
        return self.saved

    def close(self, timeout_s: float = 10.0) -> None:
        """Everything is in place after the last checkpoint."""


def dead_letters_path(output: Path) -> Path:
    """Where ``alert-anomaly score`` writes the dead letters of OUTPUT: beside it, same format
    (``scores.parquet`` -> ``scores.dead-letters.parquet``)."""
    return output.with_name(f"{output.stem}.dead-letters{output.suffix}")


def write_dead_letters_file(rows: list[dict[str, Any]], path: Path) -> None:
    """Dead letters as one Parquet file (with the input's bytes) or CSV file (without them)."""
    table = pa.Table.from_pylist(rows, schema=DEAD_LETTER_COLUMNS)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        pa_csv.write_csv(table.drop_columns(["value"]), path)
    else:
        pq.write_table(table, path, compression="zstd")


def _top_level(uri: str, found: list[str]) -> list[str]:
    """The names of the objects directly under the prefix ``uri`` among ``found``."""
    base = uri.rstrip("/") + "/"
    return [f[len(base) :] for f in found if f.startswith(base) and "/" not in f[len(base) :]]


def _checkpointed(directory: Location, prefix: str) -> list[pa.Table]:
    """The parts named ``prefix*`` of a Parquet replay output's last checkpoint, in order."""
    if isinstance(directory, str):
        text = storage.read_text(storage.join(directory, CHECKPOINT))
        if text is None:
            raise DataError(f"{directory} holds no replay output ({CHECKPOINT})")
        names = [p for p in json.loads(text)["parts"] if p.startswith(prefix)]
        return [storage.read_arrow(storage.join(directory, p)) for p in names]
    saved = json.loads((directory / CHECKPOINT).read_text())
    return [pq.read_table(directory / p) for p in saved["parts"] if p.startswith(prefix)]


def read_dead_letters(directory: Location) -> pa.Table:
    """The dead letters of a Parquet replay output (checkpointed parts only)."""
    parts = _checkpointed(directory, "_dead")
    return pa.concat_tables(parts) if parts else DEAD_LETTER_COLUMNS.empty_table()


def read_scores(directory: Location) -> pa.Table:
    """The scores of a Parquet replay output, in replay order (checkpointed parts only)."""
    parts = _checkpointed(directory, "part-")
    return pa.concat_tables(parts) if parts else score_columns().empty_table()


class CollectingSink(WrittenAtOnce):
    """Scores and dead letters kept in memory (``score`` writes one file at the end)."""

    def __init__(self, on_written: Written) -> None:
        self.on_written = on_written
        self.records: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []

    def write(self, batch: ScoredBatch, rows: list[Row]) -> None:
        self.records += records_of(batch.columns, len(rows))
        self.on_written([row.source for row in rows])

    def dead_letter(self, item: Input, error: InputError) -> None:
        self.dead.append(dead_letter_row(item, error))
        self.on_written((item.source,))


def write_scores_file(records: list[dict[str, Any]], path: Path) -> None:
    """Scores as one Parquet or CSV file (``alert-anomaly score``)."""
    table = pa.Table.from_pylist(records, schema=score_columns())
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        pa_csv.write_csv(flat_columns(table), path)
    else:
        pq.write_table(table, path, compression="zstd")


def flat_columns(table: pa.Table) -> pa.Table:
    """``table`` with its nested columns (the explanation: a list of structs) as JSON text,
    for CSV, which has no nested types: ``[{"feature": "Amplitude_1", "contribution": 0.5}]``."""
    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = [None if v is None else json.dumps(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(field.name, pa.string()), pa.array(text))
    return table
