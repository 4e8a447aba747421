"""The benchmark's input: the committed sample's classifier records in ALeRCE's current input
format (schemaless Avro, ``schemas/ztf-lc-classifier/3``): all 209 of ALeRCE's ZTF features per
object (the bundles use the paper's 129), keys in ALeRCE's order; or, for LSST, simulated Rubin
alert packets (latest schema, with their light-curve history) in Rubin's Confluent framing.
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


LSST_PACKETS = 200  # distinct simulated packets (about 1.5 s to simulate), repeated
LSST_SEED = 20261129


@cache
def lsst_encoded() -> tuple[tuple[bytes, bytes], ...]:
    """(key, value) of simulated Rubin alert packets in Rubin's wire format."""
    from models.simulate.lsst_dataset import packet_bytes, simulate_packets

    packets = (packet for _, packet in simulate_packets(LSST_PACKETS, LSST_SEED))
    return tuple(packet_bytes(packets))


def encoded_for(survey: str) -> tuple[tuple[bytes, bytes], ...]:
    return lsst_encoded() if survey == "lsst" else encoded()


def messages(n: int, survey: str = "ztf") -> Iterator[tuple[bytes, bytes]]:
    """``n`` input messages of the survey's workload, repeated in order."""
    sample = encoded_for(survey)
    for i in range(n):
        yield sample[i % len(sample)]
