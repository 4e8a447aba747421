"""What the Kafka sink writes: one class per kind of output, chosen by the settings
(:func:`topic_outputs`).

Per scored row, each :class:`RowOutput` gives one message - our anomaly-score record
(:class:`AnomalyScores`) or ALeRCE's anomaly step record (:class:`StepRecords`), and ALeRCE's
database write (:class:`ScribeCommands`) - written at least once: an input is committed only when
every row output of its rows is acknowledged. Per batch, :class:`StepMetrics` gives one message
sent once, as ALeRCE's framework sends its metrics (nothing waits for it). A new kind of output is
one class here and one line in :func:`topic_outputs`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from service.config import Settings
from service.io.codecs.alerce_output import make_step_output_encoder
from service.io.codecs.avro import make_batch_encoder
from service.io.codecs.scribe import make_scribe_encoder
from service.io.codecs.step_metrics import step_metrics
from service.io.topics import Topics
from service.records import Row, ScoredBatch


class RowOutput(Protocol):
    """One message per scored row, to one topic."""

    what: str  # its name in dead letters and logs
    keeps_inputs: bool  # made from the rows' inputs (Row.origin)
    # one message per object of a batch: a row's is left out when a later row of the batch
    # has the same object (the later one's message stands for both)
    one_per_object: bool

    def topic(self, topics: Topics) -> str:
        """Where it goes, given the topics of the moment it is first produced."""

    def encode(self, batch: ScoredBatch, rows: list[Row]) -> list[bytes]:
        """The messages of a batch's rows, in row order."""


class AnomalyScores:
    """Our anomaly-score record (``output.format`` avro, json or confluent) on the score topic."""

    what = "score"
    keeps_inputs = False
    one_per_object = False

    def __init__(self, settings: Settings) -> None:
        output = settings.output
        self._encode = make_batch_encoder(output.format, output.confluent_schema_id)

    def topic(self, topics: Topics) -> str:
        return topics.scores

    def encode(self, batch: ScoredBatch, rows: list[Row]) -> list[bytes]:
        return self._encode(batch.columns, len(rows))


class StepRecords:
    """The record ALeRCE's anomaly step publishes (``output.format alerce``,
    :mod:`service.io.codecs.alerce_output`), made from each row's input, on the score topic."""

    what = "score"
    keeps_inputs = True
    one_per_object = False

    def __init__(self, settings: Settings) -> None:
        self._encode = make_step_output_encoder(settings)

    def topic(self, topics: Topics) -> str:
        return topics.scores

    def encode(self, batch: ScoredBatch, rows: list[Row]) -> list[bytes]:
        return self._encode(batch.columns, rows)


class ScribeCommands:
    """ALeRCE's database write per scored object (``output.scribe_topic``,
    :mod:`service.io.codecs.scribe`): one per object of a batch, the latest row's. Their writer
    runs a consumed batch of commands as one upsert statement, which PostgreSQL refuses whole
    when two of its rows have one key - their other upserts keep the last row of a key first,
    their score upsert does not (``tests/unit/upstream/alerce_scribe.json``)."""

    what = "scribe_command"
    keeps_inputs = False
    one_per_object = True

    def __init__(self, topic: str, detector_name: str) -> None:
        self._topic = topic
        self._encode = make_scribe_encoder(detector_name)

    def topic(self, topics: Topics) -> str:
        return self._topic

    def encode(self, batch: ScoredBatch, rows: list[Row]) -> list[bytes]:
        return self._encode(batch.columns, len(rows))


class StepMetrics:
    """A batch's step metrics as ALeRCE's steps send them (``output.metrics_topic``,
    :mod:`service.io.codecs.step_metrics`)."""

    def __init__(self, topic: str, source: str, survey: str | None) -> None:
        self.topic = topic
        self._source, self._survey = source, survey

    def encode(self, received: datetime, sent: datetime, rows: list[Row]) -> bytes:
        """The message of a batch received (its scoring began) and sent at these UTC times."""
        return step_metrics(received, sent, [row.oid for row in rows], self._source, self._survey)


def topic_outputs(settings: Settings) -> tuple[list[RowOutput], StepMetrics | None]:
    """The row outputs the settings ask for (the scores first) and the step metrics, if on."""
    output = settings.output
    scores: RowOutput = (
        StepRecords(settings) if output.format == "alerce" else AnomalyScores(settings)
    )
    rows = [scores]
    if output.scribe_topic is not None:
        rows.append(ScribeCommands(output.scribe_topic, output.detector_name))
    metrics = None
    if output.metrics_topic is not None:
        metrics = StepMetrics(output.metrics_topic, output.metrics_source, output.metrics_survey)
    return rows, metrics
