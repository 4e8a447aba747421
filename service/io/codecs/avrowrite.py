"""Schemaless Avro writing without fastavro's generic walk: a long's zig-zag varint
(:func:`write_long`, also used by the layouts of the batch decoder, the scribe commands and
ALeRCE's step output) and :class:`RecordWriter`, one small function per field of the
anomaly-score record, bytes equal to fastavro's (tests/unit/test_codec.py)."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Mapping
from typing import Any

from service.exceptions import SettingsError
from service.records import Columns

_FLOAT = struct.Struct("<f").pack
_DOUBLE = struct.Struct("<d").pack
_SMALL_LONGS = [bytes([z]) for z in range(0x80)]
_STRING_CACHE_SIZE = 4096


def write_long(n: int) -> bytes:
    """Avro's encoding of a long (zig-zag varint)."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL_LONGS[z]
    last = (z.bit_length() - 1) // 7  # index of the last 7-bit group
    return bytes([(z >> s) & 0x7F | 0x80 for s in range(0, 7 * last, 7)] + [z >> (7 * last)])


class RecordWriter:
    """A schemaless Avro writer for a record of strings, numbers, nullable ones and arrays of
    records of those (what the anomaly-score schema holds): one small function per field, not
    fastavro's generic walk; fastavro's bytes (tests/unit/test_codec.py). :meth:`batch` writes
    from columns: a field with one value for the batch (``()``: no explanation) is encoded once."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._strings: dict[str, bytes] = {}  # repeated values (class, scorer, model, topic ...)
        self._fields = [(f["name"], self._field_writer(f["type"])) for f in schema["fields"]]

    def __call__(self, record: Mapping[str, Any]) -> bytes:
        return b"".join([writer(record[name]) for name, writer in self._fields])

    def batch(self, columns: Columns, n: int) -> list[bytes]:
        """``n`` records from ``columns``: per field a list (a value per record) or one value."""
        parts: list[bytes | list[bytes]] = []
        for name, writer in self._fields:
            column = columns[name]
            if isinstance(column, list):
                parts.append(list(map(writer, column)))
            elif parts and isinstance(parts[-1], bytes):  # fields of the batch: joined once
                parts[-1] += writer(column)
            else:
                parts.append(writer(column))
        rows = (p if isinstance(p, list) else itertools.repeat(p, n) for p in parts)
        return list(map(b"".join, zip(*rows, strict=True)))

    def _string(self, value: str) -> bytes:
        encoded = self._strings.get(value)
        if encoded is None:
            data = value.encode()
            encoded = write_long(len(data)) + data
            if len(self._strings) >= _STRING_CACHE_SIZE:
                self._strings.clear()
            self._strings[value] = encoded
        return encoded

    @staticmethod
    def _long() -> Callable[[int], bytes]:
        last: list[Any] = [None, b""]

        def write(value: int) -> bytes:
            # the field's last value again (a batch's scored_at, a partition): reuse its bytes
            if value != last[0]:
                last[0], last[1] = value, write_long(value)
            encoded: bytes = last[1]
            return encoded

        return write

    def _field_writer(self, avro_type: Any) -> Callable[[Any], bytes]:
        if isinstance(avro_type, dict) and avro_type["type"] not in ("array", "record"):
            avro_type = avro_type["type"]  # logical types: their underlying type
        if isinstance(avro_type, list) and len(avro_type) == 2 and "null" in avro_type:
            null = write_long(avro_type.index("null"))
            other = write_long(1 - avro_type.index("null"))
            inner = self._field_writer(avro_type[1 - avro_type.index("null")])
            return lambda v: null if v is None else other + inner(v)
        if isinstance(avro_type, dict) and avro_type.get("type") == "array":
            items = avro_type["items"]
            pair = isinstance(items, dict) and items.get("type") == "record"
            if pair and len(items["fields"]) == 2:
                return self._pair_array_writer(items["fields"])
            return _array_writer(self._field_writer(items))
        if isinstance(avro_type, dict) and avro_type.get("type") == "record":
            fields = [(f["name"], self._field_writer(f["type"])) for f in avro_type["fields"]]
            return lambda v: b"".join([writer(v[name]) for name, writer in fields])
        if avro_type in ("long", "int"):
            return self._long()  # a cache of its own per field
        primitives: dict[str, Callable[[Any], bytes]] = {
            "string": self._string,
            "float": _FLOAT,
            "double": _DOUBLE,
            "boolean": lambda v: b"\x01" if v else b"\x00",
        }
        if isinstance(avro_type, str) and avro_type in primitives:
            return primitives[avro_type]
        raise SettingsError(f"no fast writer for Avro type {avro_type!r}")

    def _pair_array_writer(self, fields: list[dict[str, Any]]) -> Callable[[Any], bytes]:
        """An array of records of two fields (the explanation's feature and contribution), the
        items written without a function call of their own: a few microseconds a record."""
        (a, write_a), (b, write_b) = ((f["name"], self._field_writer(f["type"])) for f in fields)

        def write(values: Any) -> bytes:
            if not values:
                return b"\x00"
            parts = [write_long(len(values))]
            for v in values:
                parts += (write_a(v[a]), write_b(v[b]))
            parts.append(b"\x00")
            return b"".join(parts)

        return write


def _array_writer(item: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """An array as one block (its length, the items) and the end marker; empty: the marker."""

    def write(values: Any) -> bytes:
        if not values:
            return b"\x00"
        return write_long(len(values)) + b"".join([item(v) for v in values]) + b"\x00"

    return write
