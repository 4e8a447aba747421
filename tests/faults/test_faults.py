"""Fault runs of `alert-anomaly run`, each verified by kafka-python reading every topic: hostile
input, SIGKILL during catch-up, SIGTERM with the broker frozen, a broker restart on durable
storage (tansu on S3, served by a local moto_server). Each prints lost (must be 0) and
duplicates."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from service import __version__
from service.config import KafkaSettings
from service.demo import publish, sample_messages
from service.io.codecs.avrowrite import write_long
from service.io.embedded import EmbeddedBroker, free_port
from service.io.kafka import create_topics
from service.io.sinks.envelope import HEADERS_COUNT_LIMIT, KEY_LIMIT
from tests.faults.conftest import audit, audit_when_complete
from tests.integration.conftest import ServiceProcess
from tests.integration.test_service import committed, service_args
from tests.reading import read_all

Start = Callable[..., ServiceProcess]
RSS_LIMIT_MB = 2048  # service process and inference worker, each


def topics(bootstrap: str, prefix: str, partitions: int) -> tuple[str, str, str]:
    names = (f"{prefix}-in", f"{prefix}-scores", f"{prefix}-dlq")
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), names[:1], partitions)
    create_topics(KafkaSettings(bootstrap_servers=bootstrap), names[1:])
    return names


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]  # key, value, headers


def with_oid(good: bytes, oid: bytes) -> bytes:
    """A sample record (schemaless, its object id first and shorter than 64 bytes) with another
    object id: valid, and scored."""
    assert good[0] < 0x80
    return write_long(len(oid)) + oid + good[1 + good[0] // 2 :]


def hostile_messages(good: list[bytes], n: int, seed: int) -> list[Message]:
    """``n`` bad messages of ten kinds in a seeded order, then the poison kinds: outputs too
    large for any broker because of their key or headers (``POISON``)."""
    rng = random.Random(seed)

    def flipped(value: bytes) -> bytes:
        data = bytearray(value)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)

    oid = write_long(12) + b"ZTF18abcdefg"
    kinds: list[Callable[[], tuple[bytes | None, bytes | None]]] = [
        lambda: (b"random", rng.randbytes(rng.randint(1, 3000))),
        lambda: (b"truncated", (g := rng.choice(good))[: rng.randrange(1, len(g))]),
        lambda: (b"flipped", flipped(rng.choice(good))),
        # a feature map that claims 2^40 entries, then garbage
        lambda: (b"huge-count", oid + b"\x00" + write_long(2**40) + rng.randbytes(64)),
        # an object id of 2 GB
        lambda: (b"huge-string", write_long(2**31) + rng.randbytes(64)),
        lambda: (b"wrong-type", b'{"oid": 12, "features": "none", "lc_classification": []}'),
        lambda: (b"empty", b""),
        lambda: (b"tombstone", None),
        lambda: (None, flipped(rng.choice(good))),  # no key
    ]
    out: list[Message] = [(*rng.choice(kinds)(), None) for _ in range(n - len(POISON) * 2 - 3)]
    out += [(b"five-megabytes", rng.randbytes(5_000_000), None) for _ in range(3)]
    for _ in range(2):
        # a valid record whose object id (the score's key) is 2 MB: the score cannot be written
        huge = with_oid(rng.choice(good), b"Z" * 2_000_000)
        out.append((b"huge-oid", huge, [("trace", b"poison")]))
        # a bad message with a 2 MB key: its dead letter (the original key) cannot be written
        out.append((b"k" * 2_000_000, rng.randbytes(100), None))
        # ... with a 2 MB header, and with 10,000 headers (60 kB: that dead letter fits)
        out.append((b"huge-header", rng.randbytes(100), [("big", b"h" * 2_000_000)]))
        out.append((b"many-headers", rng.randbytes(100), [(f"h{i}", b"v") for i in range(10_000)]))
        # a valid record with many headers: scored (scores do not carry the input's headers)
        out.append(
            (b"good-many-headers", rng.choice(good), [(f"h{i}", b"v") for i in range(10_000)])
        )
    rng.shuffle(out)
    return out


POISON = ("huge-oid", "huge-key", "huge-header", "many-headers", "good-many-headers")


def produce_all(bootstrap: str, topic: str, messages: list[Message]) -> set[tuple[int, int]]:
    """Publish (large messages too); the (partition, offset) of each."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "message.max.bytes": 10_000_000, "linger.ms": 20}
    )
    placed: set[tuple[int, int]] = set()
    errors: list[str] = []

    def delivered(error: object, message: object) -> None:
        if error is not None:
            errors.append(str(error))
        else:
            placed.add((message.partition(), message.offset()))  # type: ignore[attr-defined]

    for key, value, headers in messages:
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=delivered
                )
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(120) == 0
    assert not errors, errors[:3]
    return placed


def test_hostile_input_never_stops_the_service(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    names = topics(kafka_bootstrap, topic_prefix, partitions=2)
    good = [value for _, value in sample_messages(3000)]
    messages: list[Message] = [(b"good", good[i % len(good)], None) for i in range(4000)]
    messages += hostile_messages(good, 1000, seed=15)
    random.Random(16).shuffle(messages)
    placed = produce_all(kafka_bootstrap, names[0], messages)
    service = service_process(*service_args(kafka_bootstrap, names, topic_prefix))
    started = service.event("service_starting")
    service.wait_for_metric("alert_anomaly_messages_produced_total", len(messages), timeout=300)
    rss = {"service": peak_rss_mb(service.process.pid)}
    if started.get("inference_pid"):
        rss["inference worker"] = peak_rss_mb(started["inference_pid"])
    assert service.process.poll() is None, "the service stopped"
    # bit flips may leave a record decodable (then it is scored); every other kind is bad
    scored = (b"good", b"flipped", None, b"huge-oid", b"good-many-headers")
    certainly_bad = sum(1 for key, _, _ in messages if key not in scored)
    assert service.metric("alert_anomaly_dead_letters_total") >= certainly_bad
    assert service.terminate() == 0
    stopped = service.event("service_stopped")
    assert stopped["left_in_flight"] == 0  # drained: nothing was left retrying
    result = audit(kafka_bootstrap, names, placed)
    print(result.line("hostile input (4,000 good, 1,000 bad)"), "peak RSS MB", rss)
    assert not result.lost, sorted(result.lost)[:5]
    assert all(mb < RSS_LIMIT_MB for mb in rss.values()), rss
    # the 5 MB values, the 2 MB object ids, keys and headers: each output stands as a reference
    replaced = [e for e in service.events if e.get("event") == "output_replaced"]
    too_large = (b"five-megabytes", b"huge-oid", b"huge-header")
    expected = sum(1 for k, _, _ in messages if k in too_large or (k or b"").startswith(b"kk"))
    assert len(replaced) == expected == 3 + 2 * 3
    assert not [e for e in service.events if e.get("event") == "output_dropped"]
    references = [
        m
        for m in read_all(kafka_bootstrap, names[2], quiet_s=3.0)
        if dict(m.headers).get("alert_anomaly.error") == b"oversized"
    ]
    assert len(references) == expected
    for m in references:
        headers = dict(m.headers)
        assert len(m.key or b"") <= KEY_LIMIT + 100
        assert headers["alert_anomaly.service_version"] == __version__.encode()
        assert len(m.headers) <= HEADERS_COUNT_LIMIT + 20
        if headers["alert_anomaly.original_output"] == b"score":  # the input's headers too
            assert headers["trace"] == b"poison"


def test_sigkill_during_catch_up_redoes_at_most_a_commit_interval(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    """Kills during a backlog: each redoes only the outputs of the last commit interval (plus
    the commit's own round trip), because commits come every commit_interval whatever the load."""
    n, interval_s, slack_s = 20000, 0.2, 3.0  # the tests' ALERT_ANOMALY_COMMIT_INTERVAL_MS=200
    names = topics(kafka_bootstrap, topic_prefix, partitions=2)
    sample = list(sample_messages())
    placed = set(publish(kafka_bootstrap, names[0], (sample[i % len(sample)] for i in range(n))))
    args = service_args(kafka_bootstrap, names, topic_prefix)
    windows = []
    for kill in range(2):
        started_ms = time.time() * 1000
        service = service_process(*args)
        before = service.wait_for_metric("alert_anomaly_messages_produced_total", 1)
        service.wait_for_metric("alert_anomaly_messages_produced_total", before + 3000, timeout=180)
        killed_ms = time.time() * 1000
        service.kill()
        position = committed(kafka_bootstrap, topic_prefix, names[0], 2)
        scores = read_all(kafka_bootstrap, names[1])
        redone = [  # this instance's outputs of inputs it had not committed
            m.timestamp
            for m in scores
            if m.timestamp >= started_ms and uncommitted(decode(m.value), position)
        ]
        window_s = (killed_ms - min(redone)) / 1000 if redone else 0.0
        windows.append(window_s)
        print(
            f"\nkill {kill + 1}: {len(redone)} outputs after the committed position, "
            f"produced in the last {window_s:.2f} s before the kill"
        )
        assert window_s <= interval_s + slack_s, "commits fell behind the commit interval"
    final = service_process(*args)
    final.wait_for_metric("alert_anomaly_messages_produced_total", 1, timeout=120)
    result = audit_when_complete(kafka_bootstrap, names, placed, 300)
    assert final.terminate() == 0
    print(result.line("two SIGKILLs during catch-up"), f"uncommitted windows {windows}")
    assert not result.lost


def uncommitted(lineage: tuple[int, int], position: dict[int, int]) -> bool:
    partition, offset = lineage
    return offset >= position.get(partition, 0)


def decode(value: bytes) -> tuple[int, int]:
    from service.io.codecs.avro import decode_output

    score = decode_output(value)
    return score["source_partition"], score["source_offset"]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_file=tmp_path / "tansu.log")
    with broker:
        yield broker
        os.kill(broker.pid or 0, signal.SIGCONT)


def test_sigterm_with_the_broker_frozen_stops_in_time(
    own_broker: EmbeddedBroker, service_process: Start
) -> None:
    """The broker freezes while outputs await their acknowledgement (checked: the in-flight
    gauge, read after the freeze, is above 0 when SIGTERM comes): the stop waits for them at
    most drain_timeout_s, commits nothing unacknowledged, and a restart loses nothing."""
    bootstrap, drain_s = own_broker.bootstrap_servers, 5.0
    names = topics(bootstrap, "frozen", partitions=2)
    sample = list(sample_messages())
    backlog = (sample[i % len(sample)] for i in range(20_000))  # still consumed at the freeze
    placed = set(publish(bootstrap, names[0], backlog))
    one_by_one = ("--batch-rows", "1", "--batch-delay-ms", "5")
    env = {"ALERT_ANOMALY_DRAIN_TIMEOUT_S": str(drain_s)}
    service = service_process(*service_args(bootstrap, names, "frozen", *one_by_one), env=env)
    service.wait_for_metric("alert_anomaly_messages_produced_total", 200, timeout=120)
    os.kill(own_broker.pid or 0, signal.SIGSTOP)
    # prefetched inputs are scored after the freeze: their outputs cannot be acknowledged
    unacknowledged = service.wait_for_metric("alert_anomaly_in_flight_messages", 1, timeout=60)
    started = time.monotonic()
    service.process.send_signal(signal.SIGTERM)
    code = service.process.wait(120)
    seconds = time.monotonic() - started
    os.kill(own_broker.pid or 0, signal.SIGCONT)
    print(
        f"\nSIGTERM with the broker frozen and {unacknowledged:.0f} inputs unacknowledged: "
        f"exit {code} after {seconds:.1f} s (drain {drain_s} s)"
    )
    assert code == 0
    assert seconds <= drain_s + 3 * 2.0 + 10.0  # drain, commit and two closes, and start-up slack
    again = service_process(*service_args(bootstrap, names, "frozen"))
    again.wait_for_metric("alert_anomaly_messages_produced_total", 1, timeout=120)
    result = audit_when_complete(bootstrap, names, placed, 180)
    assert again.terminate() == 0
    print(result.line("SIGTERM with the broker frozen, then a restart"))
    assert not result.lost


@pytest.fixture
def s3_storage(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A local S3 (moto_server) with the bucket 'tansu'; the environment tansu needs."""
    import boto3

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="t",
        aws_secret_access_key="t",
        region_name="us-east-1",
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            s3.create_bucket(Bucket="tansu")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }
    server.terminate()
    server.wait(10)


def acknowledged(events: list[dict[str, Any]], topic: str) -> set[tuple[int, int]]:
    """(partition, offset) of the inputs of ``topic`` whose outputs the broker acknowledged, from
    the service's debug events."""
    out = set()
    for event in events:
        if event.get("event") == "output_acknowledged":
            stream, _, position = event["input"].rpartition("[")
            if stream == topic:
                partition, _, offset = position.partition("]@")
                out.add((int(partition), int(offset)))
    return out


def test_broker_restart_on_durable_storage_loses_nothing(
    s3_storage: dict[str, str], tmp_path: Path, service_process: Start
) -> None:
    port = free_port()

    def broker() -> EmbeddedBroker:
        return EmbeddedBroker(
            port=port, storage="s3://tansu/", env=s3_storage, log_file=tmp_path / "tansu.log"
        ).start()

    first = broker()
    bootstrap = first.bootstrap_servers
    names = topics(bootstrap, "durable", partitions=2)
    publish(bootstrap, names[0], sample_messages(3000))
    one_by_one = ("--batch-rows", "1", "--batch-delay-ms", "5")
    service = service_process(
        *service_args(bootstrap, names, "durable", *one_by_one), log_level="debug"
    )
    service.wait_for_metric("alert_anomaly_messages_produced_total", 300, timeout=120)
    first.stop(kill=True)
    service.event("brokers_unavailable", timeout=60)
    time.sleep(2)  # the broker stays down a little (not a race: the service just waits)
    second = broker()
    try:
        service.event("brokers_available", timeout=120)
        # tansu acknowledges produce before S3 has the data, so it may drop inputs and outputs
        # it acknowledged (a broker gap: Kafka with acks=all keeps them). Count the inputs it
        # kept, and tell outputs it acknowledged and dropped from outputs the service never had
        # acknowledged: every one of those must come out.
        kept = {(m.partition, m.offset) for m in read_all(bootstrap, names[0], quiet_s=3.0)}
        deadline = time.monotonic() + 240
        while True:
            result = audit(bootstrap, names, kept)
            acknowledged_ = acknowledged(service.events, names[0])
            if not result.lost - acknowledged_ or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert service.terminate() == 0
        dropped = result.lost & acknowledged_
        print(result.line("broker killed and restarted on S3 storage"))
        print(f"outputs the broker acknowledged and did not keep (tansu): {len(dropped)}")
        assert not result.lost - dropped, sorted(result.lost - dropped)[:5]
    finally:
        second.stop()
