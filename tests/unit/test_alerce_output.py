"""The record ALeRCE's anomaly step publishes (output.format alerce), against the facts read from
alercebroker/pipeline (tests/unit/upstream/alerce_step_output.json): it decodes with their output
schema, carries the input's features as their parser passes them on and our one score where
their model's scores go. With ``ALERCE_PIPELINE_GIT`` the facts are re-read upstream."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import fastavro
import numpy as np
import pytest
from fastavro.schema import to_parsing_canonical_form

from models.resources import schemas_dir
from service.config import load_settings
from service.demo import sample_messages
from service.io.codecs.alerce_output import (
    lc_classification,
    make_step_output_encoder,
    passed_through,
)
from service.io.codecs.decoding import MessageDecoder
from service.io.codecs.splice import splice_points
from service.io.codecs.surveys import SURVEYS
from service.records import Input, Lineage, Row
from tests.alerce_upstream import facts, needs_clone, upstream

FACTS = facts("step_output")
OURS = schemas_dir() / "ztf-lc-classifier" / "3" / "probabilities_and_features.avsc"
THEIR_SCHEMA = fastavro.parse_schema(json.loads(OURS.read_text()))


def decode(value: bytes) -> Any:
    buffer = io.BytesIO(value)
    record = fastavro.schemaless_reader(buffer, THEIR_SCHEMA, None)
    assert buffer.tell() == len(value)
    return record


def test_records_carry_the_inputs_features_and_our_score() -> None:
    settings = load_settings(None, {"output": {"format": "alerce"}})
    encode = make_step_output_encoder(settings)
    messages = list(sample_messages(3))
    inputs = [Input(Lineage("in", 0, i, None), k, v) for i, (k, v) in enumerate(messages)]
    rows = [
        Row(item.source, key.decode(), 0.9, np.zeros(1, np.float32), 1.0, origin=item)
        for item, (key, _) in zip(inputs, messages, strict=True)
    ]
    columns = {"score": [0.5, 1.5, float("inf")], "top_class": "Transient"}
    for row, value, (_, original), score in zip(
        rows, encode(columns, rows), messages, columns["score"], strict=True
    ):
        record = decode(value)
        assert set(record) == set(FACTS["parser"]["record"])
        assert record["oid"] == row.oid
        source = decode(original)  # the classifier's record: the same schema
        expected = passed_through(source)
        assert expected is not None
        assert len(expected) > 100
        assert record["features"].keys() == source["features"].keys()
        for name, value_ in record["features"].items():
            if expected[name] is None:
                assert value_ is None
            else:
                assert math.isclose(value_, expected[name], rel_tol=1e-6)
        lc = record["lc_classification"]
        assert set(lc) == set(FACTS["parser"]["lc_classification"])
        assert lc["probabilities"] == {"Transient": pytest.approx(score)}
        assert lc["hierarchical"] == {"top": {"Transient": pytest.approx(score)}, "children": {}}
        assert lc["class"] == "Transient"


def test_nan_features_are_passed_on_as_null_and_foreign_values_left_out() -> None:
    record = {"features": {"a": float("nan"), "b": 1.5, "c": None, "d": True, "e": "text"}}
    assert passed_through(record) == {"a": None, "b": 1.5, "c": None, "d": True}
    assert passed_through({"no_features": 1}) is None


def test_a_row_without_its_input_has_null_features() -> None:
    settings = load_settings(None, {"output": {"format": "alerce"}})
    row = Row(Lineage("in", 0, 0, None), "ZTF1", 0.9, np.zeros(1, np.float32), 1.0)
    [value] = make_step_output_encoder(settings)({"score": [0.1], "top_class": "Periodic"}, [row])
    assert decode(value)["features"] is None


def test_alerce_is_a_format_of_the_kafka_sink_only() -> None:
    with pytest.raises(Exception, match="format alerce is for kind kafka"):
        load_settings(None, {"output": {"kind": "memory", "format": "alerce"}})


@needs_clone
def test_the_facts_are_still_upstream_s() -> None:
    theirs = fastavro.parse_schema(json.loads(upstream(FACTS["schema"]["file"])))
    assert to_parsing_canonical_form(theirs) == to_parsing_canonical_form(THEIR_SCHEMA)
    parser = upstream(FACTS["parser"]["file"])
    assert f"class {FACTS['parser']['class']}" in parser
    for fragment in (
        '"oid": oid,',
        '"features": features_oid,',
        '"lc_classification": tree_oid,',
        '"probabilities": model_output.probabilities,',
        '"hierarchical": model_output.hierarchical,',
        '"class": probs_copy.idxmax(axis=1),',
        "features.replace({np.nan: None}, inplace=True)",
    ):
        assert fragment in parser, fragment
    settings = upstream("lc_anomaly_step/settings.py")
    assert '"schemas/lc_classification_step",\n            "output_ztf.avsc",' in settings


def test_an_input_in_their_schema_is_spliced_and_reads_as_the_decoded_path() -> None:
    """Their classifier's records are their step's schema: the output is the input's bytes up
    to lc_classification and ours after them - the same record as decoding and writing it."""
    settings = load_settings(None, {"output": {"format": "alerce"}})
    encode = make_step_output_encoder(settings)
    columns = {"score": [0.75], "top_class": "Stochastic"}
    rows = []
    for i, (key, original) in enumerate(sample_messages(20)):
        item = Input(Lineage("in", 0, i, None), key, original)
        row = Row(item.source, key.decode(), 0.9, np.zeros(1, np.float32), 1.0, origin=item)
        rows.append(row)
        [value] = encode(columns, [row])
        [end] = splice_points([original], [0], [key.decode()])
        assert value[:end] == original[:end]  # oid and features as they came
        assert value[end:] == lc_classification("Stochastic", 0.75)
        record, source = decode(value), decode(original)
        assert record["features"] == pytest.approx(source["features"], nan_ok=True)
        assert record["lc_classification"] == {
            "probabilities": {"Stochastic": 0.75},
            "class": "Stochastic",
            "hierarchical": {"top": {"Stochastic": 0.75}, "children": {}},
        }
    alone = [encode(columns, [row])[0] for row in rows]
    assert encode({**columns, "score": [0.75] * len(rows)}, rows) == alone  # a batch, the same


def test_the_skip_refuses_every_truncation_without_reading_past_the_end() -> None:
    [(key, original)] = list(sample_messages(1))
    oid = key.decode()
    [end] = splice_points([original], [0], [oid])
    assert end > 0
    cuts = list(range(0, end, 37))
    # each cut alone, and all of them in one batch (a record never reads into the next)
    for cut in cuts:
        assert splice_points([original[:cut]], [0], [oid]).tolist() == [-1], cut
    batch = [original[:cut] for cut in cuts] + [original]
    assert splice_points(batch, [0] * len(batch), [oid] * len(batch)).tolist() == (
        [-1] * len(cuts) + [end]
    )


def test_the_splice_checks_the_oid_and_skips_the_header() -> None:
    [(key, original)] = list(sample_messages(1))
    oid = key.decode()
    [end] = splice_points([original], [0], [oid])
    header = b"\x00\x00\x00\x00\x07"
    assert splice_points([header + original], [5], [oid]).tolist() == [end + 5]
    assert splice_points([original], [0], [oid[:-1] + "X"]).tolist() == [-1]
    assert splice_points([original], [0], [oid + "X"]).tolist() == [-1]
    assert splice_points([b"", original], [0, 0], ["", oid]).tolist() == [-1, end]


def test_the_batch_decoder_s_heads_splice_the_same_records() -> None:
    """Rows of batch-decoded inputs know where lc_classification begins (``Row.head``): their
    records are the ones found by the splice's own skip."""
    settings = load_settings(None, {"output": {"format": "alerce"}})
    encode = make_step_output_encoder(settings)
    messages = list(sample_messages(50))
    decoded = MessageDecoder(settings.input, SURVEYS["ztf"]).decode([v for _, v in messages])
    known, found = [], []
    for group in decoded.groups:
        assert group.heads is not None  # all batch-decoded
        for i, head in zip(group.inputs.tolist(), group.heads.tolist(), strict=True):
            key, value = messages[i]
            item = Input(Lineage("in", 0, i, None), key, value)
            row = Row(item.source, key.decode(), 0.9, np.zeros(1, np.float32), 1.0, origin=item)
            found.append(row)
            known.append(row._replace(head=head))
    assert len(known) == len(messages)
    columns = {"score": [0.5] * len(known), "top_class": "Periodic"}
    assert encode(columns, known) == encode(columns, found)
