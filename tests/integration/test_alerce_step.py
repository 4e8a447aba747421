"""The service as a step of ALeRCE's pipeline, end to end on a real broker: ALeRCE's classifier
records in (and one that is not), the service run as deployed (a process of the CLI) configured
by the environment their step's deployment sets - their variable names only, through the alerce
profile -, and everything it writes read back by an independent client (kafka-python) and
decoded with the upstream schemas as their consumers read it: scores in their step's record (the
input's features passed on) on the daily topic of their strategy, a scribe command per scored
object that their database writer accepts, none for the dead letter, and step metrics in their
format."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import fastavro

from models.resources import bundle_dirname, bundles_dir, schemas_dir
from models.scorers import DEFAULT_SCORERS
from service.config import KafkaSettings
from service.demo import publish, sample_messages
from service.io.kafka import create_topics
from service.io.topics import DailyTopics
from tests.integration.conftest import ServiceProcess
from tests.reading import read_all
from tests.unit.test_scribe import THEIR_SCHEMA, their_writer_accepts
from tests.unit.test_step_metrics import their_schema_accepts

N = 300
STEP_SCHEMA = fastavro.parse_schema(
    json.loads((schemas_dir() / "ztf-lc-classifier/3/probabilities_and_features.avsc").read_text())
)
BAD_KEY = b"ZTF-not-a-record"


def step_record(value: bytes) -> Any:
    """A record in ALeRCE's classifier output schema (their anomaly step's too)."""
    buffer = io.BytesIO(value)
    record = fastavro.schemaless_reader(buffer, STEP_SCHEMA, None)
    assert buffer.tell() == len(value)
    return record


def model_version(top_class: str) -> str:
    """The version of the shipped bundle that scores ``top_class``."""
    bundle = bundles_dir() / bundle_dirname("ztf", top_class, DEFAULT_SCORERS[top_class])
    version: str = json.loads((bundle / "manifest.json").read_text())["model_version"]
    return version


def test_alerce_records_in_alerce_outputs_out(
    service_process: Callable[..., ServiceProcess], kafka_bootstrap: str, topic_prefix: str
) -> None:
    strategy = DailyTopics(f"{topic_prefix}-anomaly_%s", f"{topic_prefix}-anomaly_%s_dlq")
    # a run across the change hour writes to two days' topics: both are read
    started = strategy.at(datetime.now(UTC))
    names = {
        "in": f"{topic_prefix}-lc_classifier",
        "scribe": f"{topic_prefix}-w_score",
        "metrics": f"{topic_prefix}-metrics",
    }
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    create_topics(kafka, [*names.values(), *started])
    publish(kafka_bootstrap, names["in"], [*sample_messages(N), (BAD_KEY, b"\x00not avro")])
    # the environment of their step's deployment, their names only (their settings.py)
    their_environment = {
        "CONSUMER_SERVER": kafka_bootstrap,
        "CONSUMER_TOPICS": names["in"],
        "CONSUMER_GROUP_ID": topic_prefix,
        "PRODUCER_SERVER": kafka_bootstrap,
        "PRODUCER_TOPIC_FORMAT": strategy.scores_format,
        "PRODUCER_DATE_FORMAT": "%Y%m%d",
        "PRODUCER_CHANGE_HOUR": "22",
        "PRODUCER_RETENTION_DAYS": "8",
        "SCRIBE_SERVER": kafka_bootstrap,
        "SCRIBE_TOPIC": names["scribe"],
        "METRICS_HOST": kafka_bootstrap,
        "METRICS_TOPIC": names["metrics"],
        "METRICS_SURVEY": "ztf",
        "MODEL_CLASS": "alerce_classifiers.anomaly.model.AnomalyDetector",  # theirs: unused
    }
    service = service_process(
        "--metrics-port", "0", env={"ALERT_ANOMALY_PROFILE": "alerce", **their_environment}
    )
    profile = service.event("settings_profile")
    assert (profile["profile"], profile["unused"]) == ("alerce", ["MODEL_CLASS"])
    commands = read_all(kafka_bootstrap, names["scribe"], N)
    ended = strategy.at(datetime.now(UTC))
    assert service.terminate() == 0, "".join(service.raw[-20:])

    days = sorted({started, ended})
    scores = [m for d in days for m in read_all(kafka_bootstrap, d.scores, 1, timeout_s=30)]
    dead = [m for d in days for m in read_all(kafka_bootstrap, d.dead_letters, 1, timeout_s=30)]
    inputs = {key.decode(): step_record(value) for key, value in sample_messages(N)}
    oids = set(inputs)
    # their step's record (the profile's output.format alerce), read with their output schema
    records = [step_record(m.value) for m in scores]
    assert sorted(r["oid"] for r in records) == sorted(oids)  # each object scored once
    for record in records:
        assert record["features"] is not None
        assert record["features"].keys() == inputs[record["oid"]]["features"].keys()
        assert set(record["lc_classification"]["probabilities"]) == {
            record["lc_classification"]["class"]
        }
    assert [m.key for m in dead] == [BAD_KEY]

    rows = []
    for message in commands:
        buffer = io.BytesIO(message.value)
        record = fastavro.schemaless_reader(buffer, THEIR_SCHEMA, None)
        assert isinstance(record, dict)
        rows += their_writer_accepts(json.loads(record["payload"]))
        assert message.key.decode() == rows[-1][1]  # keyed by the object, as the score
    by_oid = {r["oid"]: r for r in records}
    assert sorted(row[1] for row in rows) == sorted(oids)  # one per scored object, none else
    for name, oid, version, category, score in rows:
        assert name == "alert_anomaly_top"
        lc = by_oid[oid]["lc_classification"]
        assert (version, category) == (model_version(lc["class"]), lc["class"])
        published = lc["probabilities"][category]
        assert abs(score - published) <= 1e-6 * max(1.0, abs(score))  # float32 in their record

    metrics = [json.loads(m.value) for m in read_all(kafka_bootstrap, names["metrics"], 1)]
    for message in metrics:
        their_schema_accepts(message)
        assert (message["source"], message["survey"]) == ("alert-anomaly", "ztf")
    assert sum(m["n_messages"] for m in metrics) == N
    assert sorted(oid for m in metrics for oid in m["oid"]) == sorted(oids)
