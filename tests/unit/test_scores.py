"""The anomaly-score fields have one definition, the Avro schema: the processor's scored
batches, the Arrow schema of files (service.io.codecs.scores) and what `score` writes agree
with it, field for field and in order."""

from __future__ import annotations

import io
from pathlib import Path

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.exceptions import DataError
from models.features import paper_features
from models.records import input_records
from models.resources import sample_dir
from models.table import read_table
from service.cli import main
from service.config import load_settings
from service.core.processing import AlertProcessor
from service.io.codecs.avro import output_schema
from service.io.codecs.scores import arrow_field, score_columns
from service.io.codecs.surveys import get_survey
from service.records import Lineage, Row
from tests.unit.tiny_bundles import write_bundles


def avro_fields() -> list[str]:
    schema = output_schema()
    assert isinstance(schema, dict)
    return [f["name"] for f in schema["fields"]]


def test_the_arrow_schema_is_the_avro_schema() -> None:
    schema = score_columns()
    assert schema.names == avro_fields()
    assert schema.field("scored_at").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("source_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("score").type == pa.float32()
    assert schema.field("source_partition").type == pa.int32()
    assert schema.field("source_offset").type == pa.int64()
    assert all(f.nullable for f in schema)  # as score files have always been


def test_a_type_without_a_column_type_is_an_error() -> None:
    with pytest.raises(DataError, match="field x: unions other than"):
        arrow_field({"name": "x", "type": ["null", "string", "long"]})
    with pytest.raises(DataError, match="field y: Avro type"):
        arrow_field({"name": "y", "type": {"type": "map", "values": "string"}})


def test_the_explanation_is_a_list_of_structs() -> None:
    explanation = score_columns().field("explanation").type
    assert explanation == pa.list_(
        pa.struct([pa.field("feature", pa.string()), pa.field("contribution", pa.float32())])
    )


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundles(tmp_path_factory.mktemp("bundles"), "ztf", paper_features())


@pytest.mark.parametrize(  # with and without nearest subclasses
    ("top", "scorer"),
    [("Periodic", "mcdsvdd"), ("Stochastic", "ae"), ("Periodic", "mcdsvdd-ens-lite")],
)
def test_scored_batches_have_the_schemas_fields_in_order(
    bundles: Path, top: str, scorer: str
) -> None:
    model = {"bundles_dir": str(bundles), "inference": "inline", "scorers": {top: scorer}}
    settings = load_settings(None, {"input": {"topics": ["t"]}, "model": model})
    processor = AlertProcessor(settings)
    assert processor.routes[top].scorer.bundle.manifest.scorer == scorer
    rows = [
        Row(Lineage("t", 0, i, None), f"o{i}", 0.5, np.zeros(3, np.float32), 1.0) for i in (0, 1)
    ]
    zeros = np.zeros(2, np.float32)
    batch = processor.scored_batch(top, rows, zeros, zeros, np.zeros(2, np.int64), 0.0)
    assert list(batch.columns) == avro_fields() == score_columns().names


def test_score_writes_exactly_the_derived_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_ANOMALY_MODEL__INFERENCE", "inline")
    records = list(input_records(read_table(sample_dir() / "objects.parquet").take(np.arange(20))))
    buffer = io.BytesIO()
    fastavro.writer(buffer, get_survey("ztf").schema(), records)
    alerts, out = tmp_path / "alerts.avro", tmp_path / "scores.parquet"
    alerts.write_bytes(buffer.getvalue())
    assert main(["score", "--no-progress", str(alerts), str(out)]) == 0
    assert pq.read_schema(out).remove_metadata() == score_columns()
    assert pq.read_table(out).num_rows > 0
