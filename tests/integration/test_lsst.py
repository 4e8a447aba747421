"""Rubin/LSST records with classifier probabilities (``schemas/lsst-lc-classifier/1.0``: keyed by
diaObjectId, diaObject-style feature names) are routed as ZTF's are, by their own bundles, through
settings alone - the processing code is the same."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import fastavro
import numpy as np

from models.bundle import Bundle
from models.records import input_records
from models.resources import bundle_dirname, sample_dir
from models.table import read_table
from models.training import TrainingConfig, train_model
from service.config import load_settings
from service.core.processing import AlertProcessor
from service.exceptions import InputError
from service.io.codecs.surveys import SURVEYS
from service.records import Lineage


def rubin_name(ztf: str) -> str:
    """`Amplitude_1` -> `g_Amplitude`, `_2` -> `r_`, `_12` -> `gr_` (diaObject style)."""
    stem, _, band = ztf.rpartition("_")
    prefix = {"1": "g", "2": "r", "12": "gr"}.get(band)
    return f"{prefix}_{stem}" if stem and prefix else f"lsst_{ztf}"


def test_lsst_records_are_scored_by_lsst_bundles(tmp_path: Path) -> None:
    table = read_table(sample_dir() / "objects.parquet")
    table = dataclasses.replace(
        table, feature_names=tuple(rubin_name(n) for n in table.feature_names)
    )
    periodic = table.take(table.top_class == "Periodic")
    config = TrainingConfig(scorer="mcdsvdd", top_class="Periodic", max_epochs=3, pretrain_epochs=2)
    trained = train_model(
        periodic.features, periodic.subclass, periodic.feature_names, config, progress=False
    )
    Bundle.from_training(trained, config, "lsst", periodic.feature_names, {}, "lsst-test").save(
        tmp_path / bundle_dirname("lsst", "Periodic", "mcdsvdd")
    )
    settings = load_settings(
        None,
        {
            "input": {"schema_version": "1.0"},
            "model": {
                "survey": "lsst",
                "bundles_dir": tmp_path,
                "scorers": {"Periodic": "mcdsvdd"},
            },
        },
    )
    processor = AlertProcessor(settings)

    schema = fastavro.parse_schema(SURVEYS["lsst"].schema("1.0"))
    some = periodic.take(np.arange(20))
    scored = []
    for i, record in enumerate(input_records(some)):
        record["diaObjectId"] = 1_250_000_000_000_000_000 + i
        del record["oid"]
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, schema, record)  # the LSST input schema
        [rows] = processor.rows_many([buffer.getvalue()], [Lineage("lsst-alerts", 0, i, None)])
        assert not isinstance(rows, InputError), rows
        scored += [(top, row) for top, row in rows if top == "Periodic"]
    assert len(scored) >= 15  # the classifier routes most true Periodic objects to Periodic
    rows = [row for _, row in scored]
    scores = processor.routes["Periodic"].scorer.score(np.stack([row.features for row in rows]))
    batch = processor.scored_batch(
        "Periodic", rows, scores.raw, scores.percentile, scores.nearest_index, 0.0
    )
    assert {r["survey"] for r in batch.records} == {"lsst"}
    assert batch.records[0]["oid"].startswith("12500000000000000")
    offline = processor.routes["Periodic"].scorer.score(
        np.stack([row.features for _, row in scored])
    )
    np.testing.assert_array_equal(batch.raw, offline.raw)
    # the LSST features were matched by their Rubin names
    first = np.float32(some.columns((rubin_name("Amplitude_1"),))[0, 0])
    names = processor.routes["Periodic"].bundle.feature_names
    assert scored[0][1].features[names.index("g_Amplitude")] == first
