"""Verdicts out of the store: files (CSV, JSON Lines, Parquet) and Kafka messages (a topic of
verdicts: JSON values keyed by expert, survey and object, so that a compacted topic keeps each
expert's latest verdict on each object)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from models.exceptions import ConfigurationError, DataError
from service.review.store import COLUMNS, SCHEMA_VERSION, Verdict

FORMATS: Final = (".csv", ".jsonl", ".parquet")


def export(verdicts: Sequence[Verdict], path: Path) -> Path:
    """Write ``verdicts`` to ``path``, in the format its suffix names (:data:`FORMATS`)."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigurationError(f"OUT must end in {', '.join(FORMATS)}: {path}")
    rows = [v.as_dict() for v in verdicts]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            with open(path, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
        elif suffix == ".jsonl":
            with open(path, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r, sort_keys=True) + "\n" for r in rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows, schema=_arrow_schema()), path)
    except OSError as exc:
        raise DataError(f"cannot write {path}: {exc}") from None
    return path


def _arrow_schema() -> object:
    import pyarrow as pa

    floats = {"score", "percentile"}
    return pa.schema([(c, pa.float64() if c in floats else pa.string()) for c in COLUMNS])


def message(verdict: Verdict) -> tuple[bytes, bytes]:
    """The Kafka key and value of ``verdict``: key ``expert/survey/oid``; value the verdict as
    JSON with ``verdict_schema`` (the store's schema version)."""
    key = f"{verdict.expert}/{verdict.survey}/{verdict.oid}".encode()
    value = {"verdict_schema": SCHEMA_VERSION, **verdict.as_dict()}
    return key, json.dumps(value, sort_keys=True).encode()
