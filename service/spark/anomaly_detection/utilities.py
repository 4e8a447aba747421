"""What the Spark UDFs of :mod:`.processor` run, without Spark: a batch of rows (pandas columns or
an Arrow batch) scored by the service's processor, as ``alert-anomaly score`` scores a table.

Every batch goes through :class:`service.pipeline.Pipeline` (the engine, the router, the bundles'
scorers, the collecting sink of ``score``) with the rows as one in-memory stream
(:class:`service.io.sources.files.TableSource`, offset = row index in the batch). The settings
and the processor (the loaded bundles) are made once per Python worker process and per
settings, then reused by every batch that worker scores (:func:`processor_for`); inference runs
inline, in the worker's thread (a Spark executor already runs one Python worker per core).

Output: one row per input row, in input order, with the columns of ``score``'s output
(:func:`service.io.codecs.scores.score_columns`) and two more, ``reason`` and ``error``: null for
a scored row, the dead letter's reason and message otherwise (its score columns are null but for
``oid`` and the lineage). The lineage columns say where the row was in its batch
(``source_topic`` is the stream name, ``spark`` by default), not where it was in a file.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pyarrow as pa
import structlog

from models.extras import SPARK, require
from models.table import METADATA_KEY, TOP_PROB_PREFIX, AlertTable, table_from_arrow
from models.taxonomy import TOP_CLASSES
from service.config import Settings, load_settings
from service.core.processing import AlertProcessor
from service.io.codecs.scores import score_columns
from service.io.sinks.files import CollectingSink
from service.io.sources.files import TableSource
from service.ops.logs import configure_logging
from service.ops.metrics import Metrics
from service.pipeline import Pipeline

pd: Any = require("pandas", SPARK, "scoring pandas batches (service.spark)")

STREAM = "spark"  # the source_topic of rows scored here
# what a batch is scored with whatever the settings say: inline inference (no worker process per
# Spark worker) and ``score``'s source and sink
FIXED: dict[str, dict[str, Any]] = {
    "model": {"inference": "inline"},
    "input": {"format": "container", "schema_version": None},
    "output": {"kind": "memory"},
}

_cache: dict[str, tuple[Settings, AlertProcessor, Metrics]] = {}


def output_columns() -> pa.Schema:
    """The columns of a scored batch: ``score``'s, then ``reason`` and ``error``."""
    return (
        score_columns()
        .append(pa.field("reason", pa.string()))
        .append(pa.field("error", pa.string()))
    )


def settings_json(settings: Mapping[str, Any] | None = None) -> str:
    """Setting overrides (nested by section, as ``load_settings`` takes them) as the text that
    the UDFs carry to the executors (paths as strings)."""
    return json.dumps(dict(settings or {}), sort_keys=True, default=str)


def quiet_logs() -> None:
    """In a Spark worker process, where nothing has configured the logs: warnings and errors
    only (the engine's info lines would come with every batch)."""
    if not structlog.is_configured():
        configure_logging(level="warning")


def processor_for(config: str | None = None) -> tuple[Settings, AlertProcessor, Metrics]:
    """The settings (``config``: :func:`settings_json` text over the environment's
    ``ALERT_ANOMALY_*``) and the processor with its bundles loaded, made on the first call in
    this process for ``config`` and reused by every later one."""
    key = config or "{}"
    cached = _cache.get(key)
    if cached is None:
        overrides: dict[str, Any] = json.loads(key)
        for section, values in FIXED.items():
            overrides[section] = {**overrides.get(section, {}), **values}
        settings = load_settings(None, overrides)
        cached = _cache[key] = (settings, AlertProcessor(settings), Metrics())
    return cached


def score_table(table: AlertTable, config: str | None = None, stream: str = STREAM) -> pa.Table:
    """Score the rows of ``table`` as ``score`` scores a table's (see the module docstring)."""
    n = len(table)
    if n == 0:
        return output_columns().empty_table()
    settings, processor, metrics = processor_for(config)
    pipeline = Pipeline(settings, metrics=metrics, processor=processor)
    sink = CollectingSink(pipeline.tracker.written)
    try:
        source = TableSource(stream, table, processor.survey.id_fields[0])
        pipeline.replay(source=source, sink=sink, progress=None)
    finally:
        gc.unfreeze()  # the engine froze what it found; a worker scores batch after batch
    rows: list[dict[str, Any] | None] = [None] * n
    for record in sink.records:  # one per row: a table row holds one classifier record
        rows[record["source_offset"]] = {**record, "reason": None, "error": None}
    for dead in sink.dead:
        rows[dead["source_offset"]] = {
            "oid": str(table.oid[dead["source_offset"]]),
            **{k: dead[k] for k in ("source_topic", "source_partition", "source_offset")},
            "reason": dead["reason"],
            "error": dead["error"],
        }
    missing = [i for i, row in enumerate(rows) if row is None]
    assert not missing, f"rows without an output: {missing[:5]}"
    return pa.Table.from_pylist(rows, schema=output_columns())


def score_frame(oid: Any, features: Any, probabilities: Any, config: str | None = None) -> Any:
    """Score a batch given as pandas columns: ``oid`` (a Series), ``features`` (a DataFrame, a
    column per feature, NaN = undefined) and ``probabilities`` (a DataFrame with the
    classifier's ``prob_top_<Class>`` columns); a DataFrame of :func:`output_columns`, a row
    per input row in input order."""
    columns: dict[str, Any] = {"oid": pa.array(oid.astype(str).to_numpy(), pa.string())}
    for name in features.columns:
        columns[str(name)] = pa.array(features[name].to_numpy(), from_pandas=True)
    for top in TOP_CLASSES:
        name = TOP_PROB_PREFIX + top
        if name in probabilities.columns:
            columns[name] = pa.array(probabilities[name].to_numpy(), from_pandas=True)
    meta = {"feature_names": [str(n) for n in features.columns]}
    arrow = pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    return frame_of(score_table(table_from_arrow(arrow, "a pandas batch"), config))


def frame_of(table: pa.Table) -> Any:
    """A scored batch as pandas (float32 scores stay float32, nulls NaN; integers with nulls
    as nullable integers)."""
    nullable = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
    return table.to_pandas(types_mapper=nullable.get)


def score_batches(
    batches: Iterable[pa.RecordBatch], config: str | None = None
) -> Iterator[pa.RecordBatch]:
    """Score Arrow batches of rows of the tables ``score`` reads (``oid``, the feature columns,
    ``prob_top_<Class>``...; other columns as the table layout has them): Spark's
    ``mapInArrow``. Batches of :func:`output_columns`, a row per input row."""
    for batch in batches:
        arrow = pa.Table.from_batches([batch])
        if arrow.num_rows == 0:
            continue
        table = table_from_arrow(arrow, "an Arrow batch")
        yield from score_table(table, config).cast(arrow_columns_for_spark()).to_batches()


def arrow_columns_for_spark() -> pa.Schema:
    """:func:`output_columns` as Spark takes Arrow batches: timestamps in microseconds (the
    values are the same milliseconds)."""
    fields = [
        pa.field(f.name, pa.timestamp("us", tz=f.type.tz)) if pa.types.is_timestamp(f.type) else f
        for f in output_columns()
    ]
    return pa.schema(fields)
