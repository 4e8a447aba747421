"""The end-to-end demo: embedded broker, sample alerts in the survey's input format (plus a few
bad messages), the service scoring them until all are done, and a report. ZTF: the committed
sample as ALeRCE classifier records; LSST: simulated Rubin alert packets in Rubin's wire format.

The helpers that publish input messages and read scores back are also what tests and the
replay tooling use to talk to topics.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from models.records import input_records, input_schema
from models.resources import sample_dir
from models.table import read_table
from service.config import ClientConfig, Settings, load_settings
from service.core.engine import Stats
from service.exceptions import BrokersUnavailableError, KafkaServiceError
from service.io.codecs.avro import CONFLUENT_HEADER_SIZE, confluent_header, decode_output
from service.io.embedded import EmbeddedBroker
from service.io.kafka import create_topics, new_client
from service.live import ScoringService
from service.ops.availability import WAIT_SLICE_S, Brokers
from service.ops.health import Health, MetricsServer
from service.ops.metrics import Metrics

INPUT_TOPIC = "ztf-lc-classifier"
LSST_INPUT_TOPIC = "rubin-alerts"
LSST_DEMO_OBJECTS = 1000  # simulated packets published by default (about 6 s to simulate)
LSST_DEMO_SEED = 20261129
OUTPUT_TOPIC = "anomaly-scores"
DEAD_LETTER_TOPIC = "anomaly-scores-dlq"


def encode_schemaless(record: dict[str, Any], schema: Any = None) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema or input_schema(), record)
    return buffer.getvalue()


def sample_messages(n: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(key, schemaless Avro value) of the committed sample's objects, in table order."""
    table = read_table(sample_dir() / "objects.parquet")
    for i, record in enumerate(input_records(table)):
        if n is not None and i >= n:
            return
        yield record["oid"].encode(), encode_schemaless(record)


def poison_messages() -> list[tuple[bytes, bytes, str]]:
    """Bad inputs the service must dead-letter: (key, value, expected reason)."""
    good = next(input_records(read_table(sample_dir() / "objects.parquet")))
    no_probabilities = json.loads(json.dumps(good))
    no_probabilities["lc_classification"]["hierarchical"] = {}
    infinite = json.loads(json.dumps(good))
    first_feature = next(iter(infinite["features"]))
    infinite["features"][first_feature] = float("inf")
    unknown = json.loads(json.dumps(good))
    unknown["lc_classification"]["hierarchical"]["top"] = {"Bogus": 0.9, "Transient": 0.1}
    return [
        (b"poison-bytes", b"\x00\xffthis is not avro", "undecodable"),
        (b"poison-noprob", encode_schemaless(no_probabilities), "missing_probabilities"),
        (b"poison-inf", encode_schemaless(infinite), "non_finite_feature"),
        (b"poison-class", encode_schemaless(unknown), "unknown_class"),
    ]


def publish(
    bootstrap_servers: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    timestamp_ms: int | None = None,
    client: ClientConfig | None = None,
    brokers: Brokers | None = None,
) -> list[tuple[int, int]]:
    """Produce messages and wait until the broker acknowledged all; returns the (partition,
    offset) of each message, in order. ``client``: further librdkafka properties (security);
    ``brokers``: how long to wait when no broker answers (default 60 s), first for the topic's
    metadata (:meth:`Brokers.metadata`: progress lines, refused connections fail sooner), then
    for the acknowledgements."""
    brokers = brokers or Brokers(bootstrap_servers, 60.0)
    producer = new_client(  # a property librdkafka rejects is one line
        Producer,
        {
            "bootstrap.servers": bootstrap_servers,
            **(client or {}),
            **brokers.hooks(),
            "linger.ms": 20,
            "acks": "all",
            "message.timeout.ms": int(brokers.timeout_s * 1000),
        },
    )
    brokers.metadata(producer, topic)
    failures: list[str] = []
    placed: list[tuple[int, int]] = []

    def delivered_to(i: int) -> Callable[[Any, Any], None]:
        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                failures.append(str(error))
            else:
                placed[i] = (message.partition(), message.offset())

        return delivered

    for i, (key, value) in enumerate(messages):
        placed.append((-1, -1))
        while True:
            try:
                producer.produce(
                    topic,
                    value=value,
                    key=key,
                    on_delivery=delivered_to(i),
                    timestamp=timestamp_ms or 0,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    deadline = time.monotonic() + brokers.timeout_s + 5
    while (remaining := producer.flush(WAIT_SLICE_S)) and time.monotonic() < deadline:
        brokers.check()  # progress lines while no broker answers; gives up after its timeout
    if remaining or failures:
        unpublished = remaining + len(failures)
        if not brokers.ever_answered:
            raise KafkaServiceError(
                f"cannot reach a Kafka broker at {bootstrap_servers}: {unpublished} messages "
                f"were not published to {topic}"
            )
        if not brokers.available:
            raise BrokersUnavailableError(
                f"no Kafka broker answered ({bootstrap_servers}): {unpublished} messages were not "
                f"published to {topic}"
            )
        raise KafkaServiceError(
            f"{unpublished} messages were not published: {failures[0] if failures else 'timeout'}",
            topic=topic,
        )
    return placed


def read_topic(
    bootstrap_servers: str, topic: str, expected: int, timeout_s: float = 60.0
) -> list[Any]:
    """Read a topic from the beginning (no consumer group) until ``expected`` messages."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": "alert-anomaly-reader",
            "enable.auto.commit": False,
        }
    )
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = metadata.topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    out.append(message)
    finally:
        consumer.close()
    return out


@dataclass
class DemoInput:
    """What the demo publishes: the good messages (their objects' true subclasses) and the bad."""

    topic: str
    messages: list[tuple[bytes, bytes]]
    poison: list[tuple[bytes, bytes, str]]
    truth: dict[str, str]
    settings: dict[str, Any]


def ztf_demo_input(n: int | None) -> DemoInput:
    table = read_table(sample_dir() / "objects.parquet")
    truth = dict(zip(table.oid.tolist(), table.subclass.tolist(), strict=True))
    return DemoInput(INPUT_TOPIC, list(sample_messages(n)), poison_messages(), truth, {})


def lsst_demo_input(n: int | None) -> DemoInput:
    """Simulated Rubin alert packets (latest schema, Rubin's Confluent framing) and packets that
    cannot be scored: bytes that are not a packet, a packet without diaObject (a solar-system
    source), a schema id that Rubin's registry does not have."""
    from models import rubin
    from models.simulate.lsst_dataset import packet_bytes, simulate_packets

    labeled = simulate_packets(n or LSST_DEMO_OBJECTS, LSST_DEMO_SEED)
    packets = [packet for _, packet in labeled]
    truth = {str(p["diaObject"]["diaObjectId"]): subclass for subclass, p in labeled}
    no_object = {**packets[0], "diaObject": None}
    framed = rubin.confluent_bytes(packets[0])
    unknown_id = confluent_header(99999) + framed[CONFLUENT_HEADER_SIZE:]
    poison = [
        (b"poison-bytes", b"this is not an alert packet", "undecodable"),
        (b"poison-no-object", rubin.confluent_bytes(no_object), "no_object"),
        (b"poison-schema-id", unknown_id, "unknown_schema"),
    ]
    settings = {"model": {"survey": "lsst"}}
    return DemoInput(LSST_INPUT_TOPIC, list(packet_bytes(iter(packets))), poison, truth, settings)


@dataclass
class DemoResult:
    stats: Stats
    scores: list[dict[str, Any]]
    dead_letters: list[Any]
    seconds: float
    metrics_url: str | None
    truth: dict[str, str]


def run_demo(
    n: int | None, settings_overrides: dict[str, Any] | None = None, survey: str = "ztf"
) -> DemoResult:
    """Everything `alert-anomaly demo` does, without printing."""
    demo = lsst_demo_input(n) if survey == "lsst" else ztf_demo_input(n)
    with EmbeddedBroker() as broker:
        settings: Settings = load_settings(
            None,
            {
                "kafka": {
                    "bootstrap_servers": broker.bootstrap_servers,
                    "consumer": {"session.timeout.ms": "6000"},
                },
                "input": {"topics": [demo.topic], "group_id": "alert-anomaly-demo"},
                "output": {"topic": OUTPUT_TOPIC, "dead_letter_topic": DEAD_LETTER_TOPIC},
                "metrics_port": 0,
                **demo.settings,
                **(settings_overrides or {}),
            },
        )
        create_topics(settings.kafka, [demo.topic], partitions=2)
        create_topics(settings.kafka, [OUTPUT_TOPIC, DEAD_LETTER_TOPIC])
        poison, messages = demo.poison, demo.messages
        placed = publish(
            broker.bootstrap_servers, demo.topic, [*messages, *(p[:2] for p in poison)]
        )
        total = len(placed)

        metrics, health = Metrics(), Health()
        service = ScoringService(settings, metrics, on_ready=lambda r: setattr(health, "ready", r))
        server = (
            MetricsServer(metrics, health, "127.0.0.1", settings.metrics_port).start()
            if settings.metrics_port is not None
            else None
        )
        url = f"http://127.0.0.1:{server.port}/metrics" if server else None
        worker = threading.Thread(target=service.run, kwargs={"heartbeat": health.tick})
        started = time.monotonic()
        worker.start()
        try:
            while worker.is_alive() and service.stats.completed < total:
                time.sleep(0.05)
            seconds = time.monotonic() - started
        finally:
            service.stop()
            worker.join()
            if server is not None:
                server.stop()
        if service.stats.completed < total:
            raise KafkaServiceError(
                f"the service stopped after {service.stats.completed} of {total} messages"
            )
        outputs = read_topic(broker.bootstrap_servers, OUTPUT_TOPIC, len(messages))
        dead = read_topic(broker.bootstrap_servers, DEAD_LETTER_TOPIC, len(poison))
        scores = [decode_output(m.value()) for m in outputs]
        return DemoResult(service.stats, scores, dead, seconds, url, demo.truth)
