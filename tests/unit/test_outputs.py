"""The Kafka sink's outputs (service.io.sinks.outputs): one class per kind, chosen by the
settings; the sink waits for each row output of a row before its input is committed."""

from __future__ import annotations

from typing import Any

from service.config import load_settings
from service.io.sinks.kafka import KafkaSink
from service.io.sinks.outputs import (
    AnomalyScores,
    ScribeCommands,
    StepMetrics,
    StepRecords,
    topic_outputs,
)
from service.io.topics import Topics
from service.ops.availability import Brokers
from service.ops.metrics import Metrics

UNUSED = "127.0.0.1:9"


def outputs(**output: Any) -> tuple[list[type], type | None]:
    rows, metrics = topic_outputs(load_settings(None, {"output": output}))
    return [type(r) for r in rows], type(metrics) if metrics is not None else None


def test_each_output_is_one_class_chosen_by_the_settings() -> None:
    assert outputs() == ([AnomalyScores], None)
    assert outputs(format="json") == ([AnomalyScores], None)
    assert outputs(format="alerce") == ([StepRecords], None)
    assert outputs(scribe_topic="w") == ([AnomalyScores, ScribeCommands], None)
    everything = outputs(format="alerce", scribe_topic="w", metrics_topic="m")
    assert everything == ([StepRecords, ScribeCommands], StepMetrics)


def test_the_sink_waits_for_every_row_output_and_keeps_inputs_when_one_needs_them() -> None:
    def sink(**output: Any) -> KafkaSink:
        settings = load_settings(None, {"output": output, "kafka": {"bootstrap_servers": UNUSED}})
        return KafkaSink(settings, Metrics(), lambda sources: None, Brokers(UNUSED, 60.0))

    plain, alerce = sink(), sink(format="alerce", scribe_topic="w", metrics_topic="m")
    assert (plain.outputs_per_row, plain.keeps_inputs) == (1, False)
    assert (alerce.outputs_per_row, alerce.keeps_inputs) == (2, True)
    plain.close(0)
    alerce.close(0)


def test_each_row_output_names_its_topic() -> None:
    topics = Topics("scores-20261205", "dead-20261205")
    [scores, scribe], _ = topic_outputs(
        load_settings(None, {"output": {"format": "alerce", "scribe_topic": "w"}})
    )
    assert (scores.topic(topics), scores.what) == ("scores-20261205", "score")
    assert (scribe.topic(topics), scribe.what) == ("w", "scribe_command")
