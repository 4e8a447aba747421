"""Our scribe commands in ALeRCE's database, on a real PostgreSQL server
(tests/integration/postgres_server.py): their ``score`` table and the statement their writer
sends for a consumed batch of commands, both as read from alercebroker/pipeline
(tests/unit/upstream/alerce_scribe.json: ``table``, ``writer.batch``, ``writer.statement``).
What our commands become there - one row per object, the same rows again on a replay - and what
their database refuses: an object it does not hold, and two commands for one object in one of
their batches (PostgreSQL will not update a row twice in one statement) - which is why our sink
writes one command per object of a micro-batch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from service.io.codecs.scribe import make_scribe_encoder
from tests.integration.postgres_server import postgres_server
from tests.unit.test_kafka_sink import scored, scribe_sink
from tests.unit.test_scribe import FACTS, columns, decode, their_writer_accepts

psycopg = pytest.importorskip("psycopg", reason="the review extra (psycopg)")

TABLE = FACTS["table"]
# their Score model (db_plugins): the key, the object foreign key, a float score not null;
# their Object model's other columns play no part here
SCHEMA = f"""
CREATE TABLE object (oid VARCHAR PRIMARY KEY);
CREATE TABLE score (
    oid VARCHAR NOT NULL REFERENCES object (oid),
    detector_name VARCHAR NOT NULL,
    detector_version VARCHAR NOT NULL,
    category_name VARCHAR NOT NULL,
    score FLOAT NOT NULL,
    CONSTRAINT score_pkey PRIMARY KEY ({", ".join(TABLE["primary_key"])})
);
"""
COLUMNS = ("oid", "detector_name", "detector_version", "category_name", "score")


@pytest.fixture(scope="module")
def database() -> Iterator[Any]:
    with postgres_server() as url, psycopg.connect(url, autocommit=True) as connection:
        connection.execute(SCHEMA)
        yield connection


@pytest.fixture
def db(database: Any) -> Any:
    database.execute("DELETE FROM score; DELETE FROM object")
    return database


def write_batch(db: Any, messages: list[bytes]) -> None:
    """Their writer on a consumed batch of scribe messages: every command's rows in one
    ``INSERT ... ON CONFLICT ON CONSTRAINT score_pkey DO UPDATE SET score = excluded.score``."""
    order = ("detector_name", "oid", "detector_version", "category_name", "score")
    rows = [
        dict(zip(order, row, strict=True))
        for message in messages
        for row in their_writer_accepts(decode(message))
    ]
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(rows))
    db.execute(
        f"INSERT INTO score ({', '.join(COLUMNS)}) VALUES {values} "
        "ON CONFLICT ON CONSTRAINT score_pkey DO UPDATE SET score = excluded.score",
        [row[c] for row in rows for c in COLUMNS],
    )


def scores(db: Any) -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT {', '.join(COLUMNS)} FROM score ORDER BY oid").fetchall()


def test_our_commands_are_one_row_per_object_and_a_replay_writes_the_same(db: Any) -> None:
    batch = columns(3, top="Stochastic", version="2.1.0+sim20261122")
    for oid in batch["oid"]:
        db.execute("INSERT INTO object (oid) VALUES (%s)", (oid,))
    messages = make_scribe_encoder("alert_anomaly")(batch, 3)
    write_batch(db, messages)
    expected = [
        (oid, "alert_anomaly_top", "2.1.0+sim20261122", "Stochastic", score)
        for oid, score in zip(batch["oid"], batch["score"], strict=True)
    ]
    assert scores(db) == expected
    write_batch(db, messages)  # a replay: the same commands in a later batch
    assert scores(db) == expected


def test_an_object_not_in_their_database_is_refused(db: Any) -> None:
    """Their score table's object id is a foreign key (README: the objects must be there)."""
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        write_batch(db, make_scribe_encoder("alert_anomaly")(columns(1), 1))
    assert scores(db) == []


def test_two_commands_for_one_object_in_one_of_their_batches_fail_the_batch(db: Any) -> None:
    """Two alerts of one object scored close together give two commands (one per scored
    alert); where their writer reads both in one batch, PostgreSQL refuses its one statement
    and nothing of the batch is written (README: In ALeRCE's pipeline)."""
    batch = columns(2)
    batch["oid"] = [batch["oid"][0]] * 2
    db.execute("INSERT INTO object (oid) VALUES (%s)", (batch["oid"][0],))
    messages = make_scribe_encoder("alert_anomaly")(batch, 2)
    assert len(messages) == 2
    with pytest.raises(psycopg.errors.CardinalityViolation):
        write_batch(db, messages)
    assert scores(db) == []
    for message in messages:  # one command per batch: the later one's score stays
        write_batch(db, [message])
    assert [row[4] for row in scores(db)] == [batch["score"][1]]


def test_our_sink_s_commands_of_a_batch_with_an_object_twice_are_written(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scribe commands of one micro-batch as our Kafka sink produces them, two alerts of
    one object in it: their writer takes them in one batch, the later alert's score."""
    sink, producer, _, _ = scribe_sink(monkeypatch)
    batch, rows = scored(3, 1)
    rows[2] = rows[2]._replace(oid=rows[0].oid)
    batch.columns["oid"] = [r.oid for r in rows]
    batch.columns["score"] = [0.1, 0.2, 0.3]
    sink.write(batch, rows)
    for oid in {r.oid for r in rows}:
        db.execute("INSERT INTO object (oid) VALUES (%s)", (oid,))
    write_batch(db, [value for topic, _, value, _, _ in producer.sent if topic == "scribe"])
    assert [(row[0], row[4]) for row in scores(db)] == [(rows[0].oid, 0.3), (rows[1].oid, 0.2)]
    sink.close(0)
