"""Anomaly scores in Spark, as a fink-science module: a pandas UDF of columns returning columns
(:func:`anomaly_score`), the module function that adds them to a DataFrame
(:func:`anomaly_detection_module`) and, for whole rows of the tables ``alert-anomaly score`` reads,
a ``mapInArrow`` function (:func:`score_rows`). Both run :mod:`.utilities`, which scores each
batch with the service's processor: the scores are bitwise those of ``score`` on the same rows.

Needs the ``spark`` extra (pyspark, pandas); without it, importing this module fails in one line
naming the extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from models.extras import SPARK, require
from models.table import LABEL_COLUMNS, PROB_PREFIX, TOP_PROB_PREFIX, TRUTH_PREFIX
from models.taxonomy import TOP_CLASSES
from service.spark.anomaly_detection.utilities import (
    output_columns,
    quiet_logs,
    score_batches,
    score_frame,
    settings_json,
)

FEATURE = "scoring in Spark (service.spark)"
pd: Any = require("pandas", SPARK, FEATURE)
F: Any = require("pyspark.sql.functions", SPARK, FEATURE)
T: Any = require("pyspark.sql.types", SPARK, FEATURE)
_arrow_types: Any = require("pyspark.sql.pandas.types", SPARK, FEATURE)

# The UDF's return type: the columns of ``score``'s output, then reason and error
SCHEMA = _arrow_types.from_arrow_schema(output_columns(), prefer_timestamp_ntz=False)


@F.pandas_udf(SCHEMA)  # type: ignore[untyped-decorator]
def anomaly_score(
    oid: pd.Series, features: pd.DataFrame, probabilities: pd.DataFrame, config: pd.Series
) -> pd.DataFrame:
    """Anomaly scores of the classifier's records, by the service's models

    Parameters
    ----------
    oid: Spark DataFrame Column
        Object ids (string)
    features: Spark DataFrame Column
        The features, a struct with a field per feature (float or double; NaN or null =
        undefined), e.g. ``F.struct(*feature_columns)``
    probabilities: Spark DataFrame Column
        The light-curve classifier's top-level probabilities, a struct with the fields
        ``prob_top_Transient``, ``prob_top_Stochastic`` and ``prob_top_Periodic``
    config: Spark DataFrame Column
        Settings over the executors' ``ALERT_ANOMALY_*`` environment, a literal JSON text of
        nested sections (``F.lit(settings_json({"model": {"survey": "ztf"}}))``; ``"{}"``: none)

    Returns
    -------
    out: struct
        A row per input row: ``alert-anomaly score``'s columns (oid, top_class, score,
        percentile, nearest_subclass, model_version...), then ``reason`` and ``error``, null
        for a scored row and the dead letter's reason and message for the others (their score
        fields null)

    Examples
    --------
    >>> from pyspark.sql import functions as F
    >>> df = spark.read.parquet("objects.parquet")  # doctest: +SKIP
    >>> feats = F.struct(*[F.col(f"`{c}`") for c in feature_columns(df)])  # doctest: +SKIP
    >>> probs = F.struct(*[F.col(c) for c in probability_columns()])  # doctest: +SKIP
    >>> df = df.withColumn(
    ...     "anomaly", anomaly_score("oid", feats, probs, F.lit("{}"))
    ... )  # doctest: +SKIP
    """
    quiet_logs()
    return score_frame(oid, features, probabilities, str(config.to_numpy()[0]))


def feature_columns(df: Any) -> list[str]:
    """The feature columns of a DataFrame in the table layout (:mod:`models.table`): its float
    and double columns but the labels, probabilities and simulation truths."""
    reserved = (TOP_PROB_PREFIX, PROB_PREFIX, TRUTH_PREFIX)
    return [
        f.name
        for f in df.schema.fields
        if isinstance(f.dataType, T.FloatType | T.DoubleType)
        and f.name not in LABEL_COLUMNS
        and not f.name.startswith(reserved)
    ]


def probability_columns() -> list[str]:
    """The columns of the classifier's top-level probabilities (``prob_top_<Class>``)."""
    return [TOP_PROB_PREFIX + top for top in TOP_CLASSES]


def anomaly_detection_module(
    df: Any,
    settings: Mapping[str, Any] | None = None,
    features: Sequence[str] | None = None,
    column: str = "anomaly",
) -> Any:
    """Wrapper that adds the anomaly scores to a DataFrame of classifier records

    Parameters
    ----------
    df: Spark DataFrame
        Rows with ``oid``, the feature columns and the ``prob_top_<Class>`` columns (the layout
        of the tables ``alert-anomaly score`` reads)
    settings: mapping, optional
        Setting overrides, nested by section (e.g. ``{"model": {"bundles_dir": "/models"}}``)
    features: list of str, optional
        The feature columns (default: :func:`feature_columns`)
    column: str
        Name of the struct column added (default ``anomaly``)

    Returns
    -------
    out: Spark DataFrame
        The columns of ``df``, then ``column``: the struct of :func:`anomaly_score`
        (``out.select(f"{column}.*")`` is ``score``'s table with ``reason`` and ``error``)
    """
    names = list(features) if features is not None else feature_columns(df)
    return df.withColumn(
        column,
        anomaly_score(
            F.col("oid"),
            F.struct(*[F.col(f"`{name}`") for name in names]),
            F.struct(*[F.col(name) for name in probability_columns()]),
            F.lit(settings_json(settings)),
        ),
    )


def score_rows(df: Any, settings: Mapping[str, Any] | None = None) -> Any:
    """Whole rows of the tables ``score`` reads, scored with ``mapInArrow``: a DataFrame of
    :data:`SCHEMA` (a row per input row; the input's other columns are not kept)."""
    return df.mapInArrow(partial(_scored_batches, config=settings_json(settings)), SCHEMA)


def _scored_batches(batches: Iterable[Any], config: str) -> Iterator[Any]:
    """:func:`.utilities.score_batches` in a Spark worker."""
    quiet_logs()
    yield from score_batches(batches, config)
