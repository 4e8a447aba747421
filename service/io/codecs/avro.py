"""Message formats: decoding input values into records and encoding anomaly scores.

Input formats (configured, never guessed): schemaless Avro with the survey's schema (what
ALeRCE's producers write), Avro object-container bytes (schema embedded; may hold several
records), Confluent wire format (magic byte 0, 4-byte big-endian schema id, schemaless Avro; ids
mapped to schema files in the settings) and JSON. Any failure is an :class:`InputError`, whose
reason and message :mod:`service.core.validation` decides from what the decoder found.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.types import Schema

from models.resources import schemas_dir
from service.config import InputFormat, OutputFormat
from service.core.validation import reject
from service.exceptions import InputError, SettingsError
from service.io.codecs.avrowrite import RecordWriter
from service.records import Columns, records_of

OUTPUT_SCHEMA_PATH = Path("anomaly-score", "1.3", "anomaly_score.avsc")
CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = struct.Struct(">bI")
CONFLUENT_HEADER_SIZE = _CONFLUENT_HEADER.size


def confluent_header(schema_id: int) -> bytes:
    """The Confluent wire-format header of a schema id (magic byte 0, id big-endian)."""
    return _CONFLUENT_HEADER.pack(CONFLUENT_MAGIC, schema_id)


Decoder = Callable[[bytes | None], list[Any]]  # None or b"": an empty message (an error)
_Inner = Callable[[bytes], list[Any]]
Projection = Callable[[Schema], Schema | None]  # writer schema -> reader schema (None: all)
Encoder = Callable[[Mapping[str, Any]], bytes]
# records of a batch by field: a list holds one value per record, anything else is the value of
# every record of the batch
BatchEncoder = Callable[[Columns, int], list[bytes]]

# What fastavro and json raise on bytes that do not fit: all mean "undecodable".
_DECODE_ERRORS = (
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    StopIteration,
    UnicodeDecodeError,
    OverflowError,
    struct.error,
)


def load_schema(path: Path) -> Schema:
    """Parse an .avsc file, or raise a SettingsError naming it."""
    try:
        with open(path) as fh:
            return fastavro.parse_schema(json.load(fh))
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise SettingsError(f"cannot load Avro schema {path}: {exc}") from exc


@cache
def output_schema() -> Schema:
    return load_schema(schemas_dir() / OUTPUT_SCHEMA_PATH)


def _schemaless(schema: Schema, reader: Schema | None = None) -> _Inner:
    def decode(value: bytes) -> list[Any]:
        buffer = io.BytesIO(value)
        record = fastavro.schemaless_reader(buffer, schema, reader)
        if buffer.tell() != len(value):
            raise reject("trailing_bytes", left=len(value) - buffer.tell())
        return [record]

    return decode


def _container(value: bytes) -> list[Any]:
    return list(fastavro.reader(io.BytesIO(value)))


def _json(value: bytes) -> list[Any]:
    return [json.loads(value)]


def _confluent(schemas: Mapping[int, Schema], project: Projection) -> _Inner:
    by_id = {i: _schemaless(schema, project(schema)) for i, schema in schemas.items()}

    def decode(value: bytes) -> list[Any]:
        if len(value) < _CONFLUENT_HEADER.size or value[0] != CONFLUENT_MAGIC:
            raise reject("not_confluent")
        _, schema_id = _CONFLUENT_HEADER.unpack_from(value)
        inner = by_id.get(schema_id)
        if inner is None:
            raise reject("unknown_schema_id", schema_id=schema_id)
        return inner(value[_CONFLUENT_HEADER.size :])

    return decode


def read_all(schema: Schema) -> None:
    """The projection that reads every field of the writer schema (no reader schema)."""


def make_decoder(
    fmt: InputFormat,
    schema: Schema | None = None,
    confluent: Mapping[int, Schema] | None = None,
    project: Projection = read_all,
) -> Decoder:
    """A decoder for the configured format; every failure becomes an InputError.
    ``project``: the reader schema of a writer schema (None: read all of it), so that fields
    nobody uses are skipped rather than built."""
    inner: _Inner
    if fmt == "schemaless":
        if schema is None:
            raise SettingsError("format schemaless needs a schema")
        inner = _schemaless(schema, project(schema))
    elif fmt == "confluent":
        inner = _confluent(confluent or {}, project)
    elif fmt == "container":
        inner = _container
    else:
        inner = _json

    def decode(value: bytes | None) -> list[Any]:
        if not value:
            raise reject("empty_value")
        try:
            records = inner(value)
        except InputError:
            raise
        except _DECODE_ERRORS as exc:
            raise reject("bad_bytes", format=fmt, error=exc) from exc
        if not records:
            raise reject("no_record", format=fmt)
        return records

    return decode


def make_encoder(fmt: OutputFormat, schema_id: int | None = None) -> Encoder:
    """An encoder of anomaly-score records (schema :data:`OUTPUT_SCHEMA_PATH`)."""
    _score_records(fmt)
    avro = RecordWriter(json.loads((schemas_dir() / OUTPUT_SCHEMA_PATH).read_text()))
    if fmt == "schemaless":
        return avro
    if fmt == "confluent":
        if schema_id is None:
            raise SettingsError("output format confluent needs a schema id")
        header = confluent_header(schema_id)
        return lambda record: header + avro(record)
    return lambda record: json.dumps(dict(record), separators=(",", ":")).encode()


def _score_records(fmt: OutputFormat) -> None:
    if fmt == "alerce":  # not an anomaly-score record: made from the inputs by the Kafka sink
        raise SettingsError("output format alerce is written by the Kafka sink only")


def make_batch_encoder(fmt: OutputFormat, schema_id: int | None = None) -> BatchEncoder:
    """An encoder of a batch of anomaly-score records given as columns (same bytes as
    :func:`make_encoder` record by record)."""
    _score_records(fmt)
    if fmt == "json":
        encode = make_encoder(fmt)
        return lambda columns, n: [encode(r) for r in records_of(columns, n)]
    avro = RecordWriter(json.loads((schemas_dir() / OUTPUT_SCHEMA_PATH).read_text()))
    if fmt == "schemaless":
        return avro.batch
    if schema_id is None:
        raise SettingsError("output format confluent needs a schema id")
    header = confluent_header(schema_id)
    return lambda columns, n: [header + value for value in avro.batch(columns, n)]


def decode_output(value: bytes, fmt: OutputFormat = "schemaless") -> dict[str, Any]:
    """Read back one anomaly-score message (for consumers, tests and replay tools)."""
    _score_records(fmt)
    if fmt == "json":
        loaded: dict[str, Any] = json.loads(value)
        return loaded
    if fmt == "confluent":
        value = value[_CONFLUENT_HEADER.size :]
    record = fastavro.schemaless_reader(io.BytesIO(value), output_schema(), None)
    if not isinstance(record, dict):
        raise TypeError("anomaly-score record expected")
    return record
