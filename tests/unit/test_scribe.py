"""ALeRCE's database writes (scribe commands): our schema and commands against the facts read
from alercebroker/pipeline (tests/unit/upstream/alerce_scribe.json): every command decodes with
their schema, and passes their writer's checks; the same scores give the same bytes (replays are
idempotent). With ``ALERCE_PIPELINE_GIT`` (a clone's git directory) the facts are re-read from
the upstream files."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import numpy as np
import pytest

from models.resources import schemas_dir
from service.io.codecs.scribe import SCRIBE_SCHEMA_PATH, make_scribe_encoder, score_commands
from tests.alerce_upstream import facts, needs_clone, upstream

FACTS = facts("scribe")
THEIR_SCHEMA = fastavro.parse_schema(
    {"type": "record", "name": FACTS["schema"]["name"], "fields": FACTS["schema"]["fields"]}
)


def columns(n: int = 3, top: str = "Periodic", version: str = "ztf-2024.1") -> dict[str, Any]:
    """A batch's anomaly-score columns as the processor makes them (one model per batch)."""
    return {
        "oid": [f"ZTF21aaa{i:04d}" for i in range(n)],
        "top_class": top,
        "score": [0.5 + i for i in range(n)],
        "model_version": version,
        "percentile": [10.0 * i for i in range(n)],
    }


def their_writer_accepts(command: dict[str, Any]) -> list[tuple[str, str, str, str, float]]:
    """The rows their database writer makes of ``command``, applying the checks it applies
    (the facts' ``writer`` section); AssertionError where it would refuse the command."""
    writer = FACTS["writer"]
    assert all(key in command for key in writer["required"]), command
    assert set(command) <= set(writer["allowed"]), command  # the others go to a constructor
    assert (command["type"], command["collection"]) == ("insert", "score")  # UpsertScoreCommand
    data = command["data"]
    assert data, "no data"
    for key in ("detector_name", "detector_version", "categories"):
        assert key in data, key
    assert len(data["categories"]) >= 1
    assert set(command["criteria"]) == set(FACTS["parser"]["command"]["criteria"])
    assert command["options"] == FACTS["parser"]["command"]["options"]
    return [
        (
            data["detector_name"],
            command["criteria"]["_id"],
            data["detector_version"],
            category["name"],
            category["score"],
        )
        for category in data["categories"]
    ]


def decode(message: bytes) -> dict[str, Any]:
    buffer = io.BytesIO(message)
    record = fastavro.schemaless_reader(buffer, THEIR_SCHEMA, None)
    assert buffer.tell() == len(message), "bytes left after the record"
    assert isinstance(record, dict)
    command = json.loads(record["payload"])
    assert isinstance(command, dict)
    return command


def test_our_schema_is_theirs() -> None:
    ours = json.loads((schemas_dir() / SCRIBE_SCHEMA_PATH).read_text())
    assert ours["name"] == FACTS["schema"]["name"]
    assert ours["fields"] == FACTS["schema"]["fields"]


def test_each_object_gets_one_command_their_writer_accepts() -> None:
    batch = columns()
    messages = make_scribe_encoder("ours")(batch, 3)
    assert len(messages) == 3
    rows = [row for message in messages for row in their_writer_accepts(decode(message))]
    assert rows == [
        ("ours_top", oid, "ztf-2024.1", "Periodic", score)
        for oid, score in zip(batch["oid"], batch["score"], strict=True)
    ]


@pytest.mark.parametrize(
    ("oids", "scores"),
    [
        (["ZTF21aaa0000", "ZTF21aaa0001"], [0.5, 1.25]),
        # escapes, non-ASCII, a payload over 127 bytes (a two-byte length), every special float
        (['a"b\\c', "Bjørn\n\t", "x" * 300, "e"], [float("nan"), float("-inf"), 1e-300, 3.0]),
        # %-format characters, a payload beyond the length table, numpy floats
        (["50%s", "%%", "y" * 5000], [np.float64(0.25), np.float64(-0.0), 2.0]),
    ],
)
def test_our_bytes_are_json_dumps_in_fastavro(oids: list[str], scores: list[float]) -> None:
    """The encoder builds the payload around its two varying values: byte for byte the
    json.dumps of the command (their step's) in fastavro's schemaless record."""
    n = len(oids)
    batch = columns(n, top='Peri"odic%s', version="v\u00e9%d")
    batch["oid"], batch["score"] = oids, scores
    for message, command in zip(
        make_scribe_encoder("alert_anomaly")(batch, n),
        score_commands(batch, n, "alert_anomaly"),
        strict=True,
    ):
        buffer = io.BytesIO()
        payload = json.dumps(command, separators=(",", ":"))
        fastavro.schemaless_writer(buffer, THEIR_SCHEMA, {"payload": payload})
        assert message == buffer.getvalue()


def test_the_same_scores_give_the_same_commands() -> None:
    """Nothing time-dependent in a command: a replay upserts the same rows."""
    first = make_scribe_encoder("alert_anomaly")(columns(), 3)
    assert make_scribe_encoder("alert_anomaly")(columns(), 3) == first
    assert make_scribe_encoder("alert_anomaly")(columns(version="ztf-2025.1"), 3) != first


def test_the_top_class_is_the_category() -> None:
    [message] = make_scribe_encoder("alert_anomaly")(columns(1, top="Transient"), 1)
    [row] = their_writer_accepts(decode(message))
    assert (row[0], row[3]) == ("alert_anomaly_top", "Transient")


def test_a_score_beyond_float32_is_written_as_their_json_writes_it() -> None:
    """json.dumps (theirs) writes inf as Infinity and json.loads (their writer's) reads it."""
    batch = columns(1)
    batch["score"] = [float("inf")]
    [message] = make_scribe_encoder("alert_anomaly")(batch, 1)
    assert their_writer_accepts(decode(message))[0][4] == float("inf")


@needs_clone
def test_the_facts_are_still_upstream_s() -> None:
    schema = json.loads(upstream(FACTS["schema"]["file"]))
    assert (schema["name"], schema["fields"]) == (
        FACTS["schema"]["name"],
        FACTS["schema"]["fields"],
    )
    parser = upstream(FACTS["parser"]["file"])
    assert f"class {FACTS['parser']['class']}" in parser
    for fragment in ('"collection": "score"', '"type": "insert"', '"_id"', '"categories"'):
        assert fragment in parser, fragment
    assert '"options": {"upsert": True, "set_on_insert": False}' in parser
    assert 'f"{self.detector_name}_top"' in parser
    decode_py, commands_py = (upstream(f) for f in FACTS["writer"]["files"])
    assert 'for required in ["type", "data", "collection"]' in decode_py
    assert 'type_ == "insert" and table == "score"' in decode_py
    assert "return UpsertScoreCommand(**message)" in decode_py
    assert 'constraint="score_pkey"' in commands_py
    assert 'if len(data["categories"]) < 1' in commands_py
    executor = upstream(FACTS["writer"]["executor_file"])
    assert "self.data.extend(command.data)" in executor  # every command's rows, one query
    assert "self.query(session, self.data)" in executor
    pins = FACTS["writer"]["pins"]
    lock = upstream(pins["file"])
    for package in ("sqlalchemy", "psycopg2-binary"):
        assert f'name = "{package}"\nversion = "{pins[package]}"' in lock, package
    # the score upsert alone keeps every row of a batch (README: one command per object)
    score_command = commands_py.split("class UpsertScoreCommand")[1].split("\nclass ")[0]
    assert "unique" not in score_command
    assert 'unique = {(el["oid"], el["name"], el["fid"]): el for el in data}' in commands_py
    step_py, apf_step = (upstream(f) for f in FACTS["writer"]["failure"]["files"])
    assert "self.db_client.bulk_execute(valid_commands)" in step_py
    before = step_py.split("self.db_client.bulk_execute")[0].split("def execute")[1]
    assert "except" in before.rsplit("try:", 1)[-1]  # every try closed before the call
    at_execute = apf_step.split("result = self.execute(preprocessed_msg)")[1]
    assert 'logger.debug("Error at execute")' in at_execute.split("raise error")[0]
    assert "self.consumer.commit()" in apf_step.split("def _post_produce")[1].split("def ")[0]
