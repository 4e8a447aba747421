"""The benchmark's input: the committed sample's classifier records in ALeRCE's current input
format (schemaless Avro, ``schemas/ztf-lc-classifier/3``): all 209 of ALeRCE's ZTF features per
object (the bundles use the paper's 129), keys in ALeRCE's order.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from functools import cache
from typing import Any

import fastavro

from models.records import input_records, input_schema
from models.resources import sample_dir
from models.table import read_table


@cache
def records() -> tuple[dict[str, Any], ...]:
    """The sample's 3,000 records (deterministic)."""
    return tuple(input_records(read_table(sample_dir() / "objects.parquet")))


@cache
def encoded() -> tuple[tuple[bytes, bytes], ...]:
    """(key, value) of every record in the input format."""
    schema = fastavro.parse_schema(input_schema())
    out = []
    for record in records():
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)
        out.append((record["oid"].encode(), buffer.getvalue()))
    return tuple(out)


def messages(n: int) -> Iterator[tuple[bytes, bytes]]:
    """``n`` input messages: the records repeated in order."""
    sample = encoded()
    for i in range(n):
        yield sample[i % len(sample)]
