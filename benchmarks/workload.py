"""The benchmark's input: the committed sample's classifier records in ALeRCE's current input
format (schemaless Avro, ``schemas/ztf-lc-classifier/3``): all 209 of ALeRCE's ZTF features per
object (the bundles use the paper's 129), keys in ALeRCE's order; or, for LSST, simulated Rubin
alert packets (latest schema, with their 12 months of history and their three FITS cutouts, in
Rubin's size and shape: :mod:`models.simulate.lsst_packets`) in Rubin's Confluent framing, with
their size distribution beside that of the sample alerts lsst-alert-packet ships.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

import fastavro
import numpy as np

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


LSST_PACKETS = 200  # distinct simulated packets (about 8 s to simulate), repeated
LSST_SEED = 20261129


@cache
def lsst_packets() -> tuple[dict[str, Any], ...]:
    """The simulated Rubin alert packets of the LSST workload (latest schema version)."""
    from models.simulate.lsst_dataset import simulate_packets

    return tuple(packet for _, packet in simulate_packets(LSST_PACKETS, LSST_SEED))


@cache
def lsst_encoded() -> tuple[tuple[bytes, bytes], ...]:
    """(key, value) of simulated Rubin alert packets in Rubin's wire format."""
    from models.simulate.lsst_dataset import packet_bytes

    return tuple(packet_bytes(iter(lsst_packets())))


def distribution(values: Sequence[int]) -> dict[str, float]:
    """n, min, median, p90, max and mean of a sample."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "min": float(a.min()),
        "median": float(np.median(a)),
        "p90": float(np.percentile(a, 90)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def lsst_packet_sizes() -> dict[str, Any]:
    """The LSST workload's message sizes (bytes, Confluent framing) and history lengths, beside
    the sample alerts lsst-alert-packet ships: each sample packet alone in the same framing, and
    its ``fakeAlert.avro`` file as shipped (an Avro container: the schema JSON embedded)."""
    from models import rubin

    packets = lsst_packets()
    samples: dict[str, dict[str, Any]] = {}
    for entry in rubin.schema_versions():
        alerts = rubin.sample_alerts(entry.version)
        samples[entry.version] = {
            "packet_bytes": [len(rubin.confluent_bytes(a, entry.version)) for a in alerts],
            "file_bytes": entry.sample_avro.stat().st_size,
            "prvDiaSources": [len(a.get("prvDiaSources") or ()) for a in alerts],
            "prvDiaForcedSources": [len(a.get("prvDiaForcedSources") or ()) for a in alerts],
            "cutouts": [
                sum(
                    a.get(k) is not None
                    for k in ("cutoutDifference", "cutoutScience", "cutoutTemplate")
                )
                for a in alerts
            ],
        }
    return {
        "simulated_bytes": distribution([len(v) for _, v in lsst_encoded()]),
        "simulated_prvDiaSources": distribution([len(p["prvDiaSources"]) for p in packets]),
        "simulated_prvDiaForcedSources": distribution(
            [len(p["prvDiaForcedSources"]) for p in packets]
        ),
        "simulated_cutout_bytes": distribution(
            [
                len(p["cutoutDifference"]) + len(p["cutoutScience"]) + len(p["cutoutTemplate"])
                for p in packets
            ]
        ),
        "schema_version": rubin.latest_version(),
        "lsst_alert_packet_samples": samples,
    }


def describe_sizes(sizes: dict[str, Any]) -> list[str]:
    """Lines stating the simulated packets' size distribution next to the samples'."""

    def row(d: dict[str, float]) -> str:
        keys = ("min", "median", "p90", "max")
        return " / ".join(f"{d[k]:,.0f}" for k in keys) + f"  (n={d['n']})"

    lines = [
        f"Rubin packets (schema {sizes['schema_version']}), min / median / p90 / max:",
        f"  simulated, bytes per message           {row(sizes['simulated_bytes'])}",
        f"  simulated, bytes of the 3 cutouts       {row(sizes['simulated_cutout_bytes'])}",
        f"  simulated, prvDiaSources               {row(sizes['simulated_prvDiaSources'])}",
        f"  simulated, prvDiaForcedSources         {row(sizes['simulated_prvDiaForcedSources'])}",
        "  lsst-alert-packet samples (bytes per message; file as shipped; prv sources, forced, "
        "cutouts):",
    ]
    for version, s in sizes["lsst_alert_packet_samples"].items():
        lines.append(
            f"    {version:6s} {', '.join(f'{b:,}' for b in s['packet_bytes'])}; "
            f"{s['file_bytes']:,}; {s['prvDiaSources']}, {s['prvDiaForcedSources']}, "
            f"{s['cutouts']}"
        )
    return lines


def encoded_for(survey: str) -> tuple[tuple[bytes, bytes], ...]:
    return lsst_encoded() if survey == "lsst" else encoded()


def messages(n: int, survey: str = "ztf") -> Iterator[tuple[bytes, bytes]]:
    """``n`` input messages of the survey's workload, repeated in order."""
    sample = encoded_for(survey)
    for i in range(n):
        yield sample[i % len(sample)]
