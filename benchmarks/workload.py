"""The benchmark's input: the committed sample's classifier records in ALeRCE's input format
(schemaless Avro, ``schemas/ztf-lc-classifier``), widened to about 150 features.

ALeRCE's light-curve classifier publishes more features than the anomaly models use (about 150
per object; the bundles use 91). The extra ones below are ALeRCE feature names the bundles do not
use; their values are drawn once per object (20% undefined). Keys are in alphabetical order, as a
producer writing a fixed column order would write them.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from functools import cache
from typing import Any

import fastavro

from models.resources import sample_dir
from models.simulate.alerts import input_records, input_schema
from models.table import read_table

_EXTRA_PER_BAND = (
    "Autocor_length",
    "Con",
    "Gskew",
    "LinearFit_slope",
    "LinearFit_slope_sigma",
    "LinearFit_reduced_chi2",
    "Q31",
    "Rcs",
    "Pvar",
    "Harmonics_mag_4",
    "Harmonics_mag_5",
    "Harmonics_mag_6",
    "Harmonics_mag_7",
    "Harmonics_phase_4",
    "Harmonics_phase_5",
    "Harmonics_phase_6",
    "Harmonics_phase_7",
    "MHPS_ratio",
    "MHPS_low",
    "MHPS_high",
    "MHPS_non_zero",
    "MHPS_PN_flag",
    "SPM_A",
    "SPM_t0",
    "SPM_gamma",
    "SPM_beta",
    "SPM_tau_rise",
    "SPM_tau_fall",
    "SPM_chi",
    "GP_DRW_sigma",
)
EXTRA_FEATURES = tuple(f"{name}_{band}" for name in _EXTRA_PER_BAND for band in (1, 2))


@cache
def records() -> tuple[dict[str, Any], ...]:
    """The sample's 3,000 records with the extra features (deterministic)."""
    rng = random.Random(20261123)
    out = []
    for record in input_records(read_table(sample_dir() / "objects.parquet")):
        features = dict(record["features"])
        for name in EXTRA_FEATURES:
            features[name] = rng.uniform(-5.0, 5.0) if rng.random() < 0.8 else None
        out.append({**record, "features": dict(sorted(features.items()))})
    return tuple(out)


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
