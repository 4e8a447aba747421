"""End-to-end benchmark: the service against the Kafka passthrough limit and a naive baseline,
measured side by side in one run (ratios, because shared machines are noisy).

    python -m benchmarks [--n 100000] [--partitions 4] [--loads 1000,5000] [--device auto]
        [--rows passthrough,naive,peer,service,baseline,alerce,instances,latency,bursts,stages,
                rubin]
        [--bursts 10000,40000] [--burst-surveys ztf,lsst] [--rubin-n 20000]

On the embedded broker (tansu), or on ``KAFKA_BOOTSTRAP_SERVERS`` when set, it pre-loads N alerts
in ALeRCE's input format (``benchmarks.workload``: 209 features each) and measures:

* passthrough - a consumer that only reads the messages and produces same-sized outputs (the
  Kafka limit of this machine for one Python client);
* naive - one message at a time: fastavro decode, build the vector, score one row with the same
  model, encode, produce, wait for the acknowledgement, commit (a straightforward at-least-once
  implementation);
* the service at saturation (alerts/s from the first message consumed to the last output
  acknowledged); right after each service run, the service routing every class to the paper's
  best model instead (``baseline``: the default before ours, the rule for a new default is
  measured against it in the same run); the service's latency (input timestamp to output
  acknowledgement) at fixed offered loads, produced by a separate process (``benchmarks.load``);
* bursts - N alerts produced at once (a Rubin visit: 10,000 typical, 40,000 at most) into a
  joined, idle service: the time from the first alert's timestamp to the last output
  acknowledged, for ZTF classifier records and for Rubin alert packets (``model.survey lsst``,
  the unrouted model, packets with their history and cutouts); with them, the Rubin packets'
  size distribution (bytes, history lengths) beside the sample alerts of lsst-alert-packet
  (``packet_sizes`` in the JSON);
* a stage breakdown per alert (decode, route + assemble, score, encode, produce);
* the Rubin rows (``benchmarks.rubin``): simulated Rubin alert packets (~100 KB) on a topic of
  their own, the passthrough of those packets and the service with the shipped diaObject models
  and with a model of light-curve features, with a profiled run and their stages.

It prints a table and writes every number, with the machine, versions and configuration, to a
JSON file. With CUDA present (``--device auto``) the models run on the GPU.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import torch
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from benchmarks import workload
from benchmarks.common import (
    STEADY,
    TANSU_CONSUMER,
    CpuMeter,
    Progress,
    StageTimer,
    Throughput,
    cores,
    machine,
    score_now,
    score_record,
    thread_cpu_seconds,
)
from benchmarks.peer import peer
from benchmarks.report import (
    ALERCE,
    BASELINE,
    RUBIN_LIGHTCURVES,
    RUBIN_PASSTHROUGH,
    RUBIN_SERVICE,
    Account,
    Burst,
    Latency,
    Report,
    print_report,
    targets,
    versions,
)
from models.exceptions import DataError
from models.scorers import PAPER_BEST_SCORERS
from models.scoring import resolve_device
from service.config import Settings, load_settings
from service.config.streams import topic_strategy
from service.core.engine import Engine
from service.core.inference import InlineInference, ProcessInference
from service.core.processing import AlertProcessor
from service.demo import publish
from service.exceptions import InputError
from service.io.codecs.avro import make_batch_encoder, make_encoder
from service.io.embedded import EmbeddedBroker
from service.io.kafka import consumer_config, create_topics, producer_config
from service.io.sinks.kafka import KafkaSink
from service.io.sources.kafka import KafkaSource
from service.live import ScoringService
from service.ops.logs import configure_logging
from service.ops.metrics import Metrics
from service.records import Input, Lineage, Row, ScoredBatch

RESULTS_DIR = Path(__file__).parent / "results"
SATURATION_TIMEOUT_S = 600.0  # the service must have scored the pre-loaded alerts by then
INSTANCE_IDLE_S = 8.0  # an instance of the scaling run stops after this long without input


ROWS = (
    "passthrough",
    "naive",
    "peer",
    "service",
    "baseline",
    "alerce",
    "instances",
    "latency",
    "bursts",
    "stages",
    "rubin",
)
# the rows that read the pre-loaded ZTF alerts
ZTF_PRELOADED = set(ROWS) - {"latency", "bursts", "rubin"}


@dataclass(frozen=True)
class Broker:
    bootstrap_servers: str
    description: str
    consumer: dict[str, str]  # librdkafka consumer settings for this broker
    pid: int | None = None  # the embedded broker's process (for its CPU time)


@contextmanager
def broker() -> Iterator[Broker]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else the embedded tansu broker."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield Broker(external, f"external ({external})", {})
        return
    with EmbeddedBroker() as embedded:
        yield Broker(
            embedded.bootstrap_servers, "embedded tansu (memory)", TANSU_CONSUMER, embedded.pid
        )


def settings_values(
    kafka: Broker, topic: str, args: argparse.Namespace, survey: str = "ztf"
) -> dict[str, Any]:
    """Service settings for one phase: fresh group and output topics named after ``topic``."""
    return {
        "kafka": {
            "bootstrap_servers": kafka.bootstrap_servers,
            "consumer": {"session.timeout.ms": "6000", **kafka.consumer},
        },
        "input": {"topics": [topic], "group_id": f"{topic}-{uuid.uuid4().hex[:6]}"},
        "output": {"topic": f"{topic}-out", "dead_letter_topic": f"{topic}-dlq"},
        "batch": {"max_rows": args.batch_rows, "max_delay_ms": args.max_delay_ms},
        "model": {"device": args.device, "survey": survey},
        "metrics_port": None,
    }


def settings_for(
    kafka: Broker, topic: str, args: argparse.Namespace, survey: str = "ztf"
) -> Settings:
    return load_settings(None, settings_values(kafka, topic, args, survey))


def alerce_settings_for(kafka: Broker, topic: str, args: argparse.Namespace) -> Settings:
    """The service row's settings with ALeRCE's outputs on: their step's record on daily topics,
    a scribe command per score and step metrics."""
    values = settings_values(kafka, topic, args)
    values["output"] = {
        **values["output"],
        "format": "alerce",
        "topic_strategy": "daily",
        "topic_format": f"{topic}-out_%s",
        "dead_letter_topic_format": f"{topic}-dlq_%s",
        "scribe_topic": f"{topic}-scribe",
        "metrics_topic": f"{topic}-metrics",
    }
    return load_settings(None, values)


def baseline_settings_for(kafka: Broker, topic: str, args: argparse.Namespace) -> Settings:
    """The service row's settings routing every class to the paper's best model (the
    service's default before the lite ensemble)."""
    values = settings_values(kafka, topic, args)
    values["model"] = {**values["model"], "scorers": dict(PAPER_BEST_SCORERS)}
    return load_settings(None, values)


def output_topics(settings: Settings) -> list[str]:
    """The topics the service writes with ``settings`` today."""
    output = settings.output
    names = list(topic_strategy(output).at(datetime.now(UTC)))
    return names + [t for t in (output.scribe_topic, output.metrics_topic) if t is not None]


def new_topics(settings: Settings, partitions: int) -> None:
    create_topics(settings.kafka, settings.input.topics, partitions=partitions)


def drop_topics(settings: Settings, inputs: bool = False) -> None:
    """Delete what a phase wrote (its outputs; with ``inputs``, its input topics too), so that
    every phase finds the broker as the first did: tansu keeps every message in memory and
    slows down as that grows (its later phases measured slower without this)."""
    outputs = output_topics(settings)
    names = outputs + (settings.input.topics if inputs else [])
    admin = AdminClient(settings.kafka.librdkafka())
    existing = admin.list_topics(timeout=30).topics
    gone = [name for name in names if name in existing]
    for future in admin.delete_topics(gone, operation_timeout=30).values() if gone else []:
        future.result()
    create_topics(settings.kafka, outputs)


# -- passthrough ---------------------------------------------------------------------------


def passthrough(
    settings: Settings, n: int, payload: bytes, broker_pid: int | None = None
) -> Throughput:
    """Read ``n`` messages and produce one ``payload``-sized output each (no decoding)."""
    consumer = Consumer(consumer_config(settings.kafka, settings.input.group_id, "earliest"))
    producer = Producer(producer_config(settings.kafka))
    consumer.subscribe(settings.input.topics)
    count, started, last_commit = 0, 0.0, time.monotonic()
    progress = Progress(n)
    meter = CpuMeter({})
    try:
        while count < n:
            for message in consumer.consume(settings.batch.max_rows, 0.5):
                if message.error() is not None:
                    continue
                if not count:
                    started = time.monotonic()
                    meter = CpuMeter({"client": os.getpid(), "broker": broker_pid})
                count += 1
                while True:
                    try:
                        producer.produce(settings.output.topic, value=payload, key=message.key())
                        break
                    except BufferError:
                        producer.poll(0.05)
            producer.poll(0)
            progress.update(
                count - len(producer), time.monotonic()
            )  # delivered ~ produced - queued
            if time.monotonic() - last_commit > settings.commit_interval_ms / 1000:
                consumer.commit(asynchronous=True)
                last_commit = time.monotonic()
        deadline = time.monotonic() + 60
        while len(producer) and time.monotonic() < deadline:  # the flush, followed
            producer.poll(0.005)
            progress.update(count - len(producer), time.monotonic())
        progress.update(count, time.monotonic())
        meter.stop()
        seconds = time.monotonic() - started
        return Throughput(count, seconds, progress.per_second(), meter.us_per_alert(count))
    finally:
        consumer.close()


# -- naive ---------------------------------------------------------------------------------


def naive(settings: Settings, n: int) -> Throughput:
    """One message at a time, with the service's models but none of its batching."""
    processor = AlertProcessor(settings)
    schema = fastavro.parse_schema(processor.survey.schema(settings.input.schema_version))
    encode = make_encoder("schemaless")
    consumer = Consumer(consumer_config(settings.kafka, settings.input.group_id, "earliest"))
    producer = Producer(producer_config(settings.kafka))
    consumer.subscribe(settings.input.topics)
    count, started = 0, 0.0
    progress = Progress(n)
    try:
        while count < n:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            if not count:
                started = time.monotonic()
            record = fastavro.schemaless_reader(io.BytesIO(message.value() or b""), schema, None)
            source = Lineage(message.topic() or "", message.partition() or 0, count, None)
            [[(top, row)]] = processor.route([Input(source, None, None, None, [record])])
            probability, target = row.top_probability, processor.routes[top]
            x = row.features[None, :]
            with torch.inference_mode():
                tensor = torch.from_numpy(x).to(processor.device)
                raw, nearest = target.scorer.net.score(target.scorer.preprocessor(tensor))
            raw_np = raw.float().cpu().numpy()
            subclasses = target.bundle.manifest.centre_subclasses
            nearest_name = subclasses[int(nearest[0])] if subclasses else None
            percentile = float(target.scorer.percentile(raw_np)[0])
            output = score_record(
                message,
                row.oid,
                processor.survey.name,
                top,
                probability,
                target,
                (float(raw_np[0]), percentile, nearest_name),
                row.coverage,
            )
            producer.produce(settings.output.topic, value=encode(output), key=message.key())
            producer.flush(30)  # the output is safely written ...
            consumer.commit(message=message, asynchronous=False)  # ... before its offset
            count += 1
            progress.update(count, time.monotonic())
        return Throughput(count, time.monotonic() - started, progress.per_second())
    finally:
        consumer.close()


# -- the service ---------------------------------------------------------------------------


class LatencyMetrics(Metrics):
    """The service's metrics, also keeping each output's latency (ack time - input time)."""

    def __init__(self) -> None:
        super().__init__()
        self.latencies_ms: list[float] = []
        self.first_input_ms = float("inf")  # the earliest input timestamp of an output
        self.last_ack_ms = 0.0
        self.by_reason: dict[str, int] = {}  # micro-batches, by why they were released

    def record_released(self, reason: str) -> None:
        super().record_released(reason)
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1

    def record_delivered(self, topic: str, source_timestamps_ms: Sequence[int | None]) -> None:
        super().record_delivered(topic, source_timestamps_ms)
        now_ms = time.time() * 1000
        stamps = [t for t in source_timestamps_ms if t]
        self.latencies_ms.extend(now_ms - t for t in stamps)
        if stamps:
            self.first_input_ms = min(self.first_input_ms, min(stamps))
        self.last_ack_ms = now_ms


class Running:
    """The service running in a thread of this process (see :func:`running`)."""

    def __init__(self, settings: Settings, metrics: Metrics | None) -> None:
        self.ready = threading.Event()
        self.service = ScoringService(
            settings, metrics, on_ready=lambda r: self.ready.set() if r else None
        )
        self.worker = threading.Thread(target=self.service.run, daemon=True)

    def wait_until(
        self,
        done: Callable[[ScoringService], bool],
        timeout_s: float,
        progress: Progress | None = None,
    ) -> bool:
        """Whether ``done(service)`` came true within the time (the service must not stop);
        ``progress`` follows the inputs completed meanwhile."""
        deadline = time.monotonic() + timeout_s
        while not done(self.service):
            if not self.worker.is_alive():
                raise RuntimeError("the service stopped early")
            now = time.monotonic()
            if now > deadline:
                return False
            if progress is not None:
                progress.update(self.service.stats.completed, now)
            time.sleep(0.005)
        if progress is not None:
            progress.update(self.service.stats.completed, time.monotonic())
        return True


@contextmanager
def running(settings: Settings, metrics: Metrics | None = None) -> Iterator[Running]:
    """The service in a thread until the block ends; then stopped (drained and committed)."""
    run = Running(settings, metrics)
    run.worker.start()
    try:
        yield run
    finally:
        run.service.stop()
        run.worker.join(120)


# What the service thread does, by the innermost of these methods it is in (an exact stage
# timer: benchmarks.common.StageTimer). Per-alert methods (MicroBatcher.add,
# OffsetTracker.register) are not wrapped: they are part of Engine._handle's own time.
SERVICE_THREAD_STAGES: dict[tuple[type, str], str] = {
    (KafkaSource, "read"): "consume (librdkafka messages -> inputs)",
    (AlertProcessor, "rows_many"): "decode + route + assemble",
    (Engine, "_handle"): "micro-batching and offset registration (per alert)",
    (KafkaSink, "_acknowledged"): "acknowledged outputs (offsets, latencies)",
    (ProcessInference, "submit"): "inference hand-over (shared memory)",
    (ProcessInference, "completed"): "inference hand-over (shared memory)",
    (InlineInference, "submit"): "score (inline)",
    (Engine, "_publish_scored"): "scored batches to the sink (bookkeeping)",
    (AlertProcessor, "scored_batch"): "score records (columns)",
    (KafkaSink, "write"): "encode + produce",
    (KafkaSink, "poll"): "delivery reports",
    (Engine, "_commit"): "commit",
    (Engine, "_flush_metrics"): "metrics",
    (Metrics, "record_batch"): "metrics",
}


def median_run(runs: list[Throughput]) -> Throughput:
    """The run with the median steady rate (of an even number: the slower of the middle two)."""
    ordered = sorted(runs, key=lambda r: r.steady_per_second or r.per_second)
    return ordered[(len(ordered) - 1) // 2]


def saturation(
    settings: Settings, n: int, broker_pid: int | None = None, profile: bool = False
) -> tuple[Throughput, dict[str, int], Account | None]:
    """The service on the pre-loaded topic; also how many alerts took each decode path and,
    with ``profile``, where the service thread's CPU time went (the stage timer's wrappers cost
    a little: the throughput is measured in a run without them). CPU time counts from the first
    message consumed (start-up and the group join left out)."""
    progress = Progress(n)
    with running(settings) as run:
        run.wait_until(lambda s: s.stats.first_consumed_at is not None, SATURATION_TIMEOUT_S)
        worker = run.service.inference_pid
        meter = CpuMeter(
            {"service process": os.getpid(), "inference worker": worker, "broker": broker_pid}
        )
        thread = run.worker
        thread_cpu = thread_cpu_seconds(thread.native_id or 0)
        timer = StageTimer(thread.ident or 0, SERVICE_THREAD_STAGES)
        if profile:
            timer.start()
        if not run.wait_until(lambda s: s.stats.completed >= n, SATURATION_TIMEOUT_S, progress):
            raise RuntimeError(f"the service did not score {n} alerts in {SATURATION_TIMEOUT_S} s")
        if profile:
            timer.stop()
        meter.stop()
        thread_after = thread_cpu_seconds(thread.native_id or 0)
    service = run.service
    stats = service.stats
    seconds = (stats.last_acknowledged_at or 0.0) - (stats.first_consumed_at or 0.0)
    alerts = stats.completed
    cpu = meter.us_per_alert(alerts)
    steady = progress.per_second()
    rate = Throughput(alerts, seconds, steady, cpu)
    account = None
    if profile and thread_cpu is not None and thread_after is not None and "service process" in cpu:
        per_alert = (thread_after - thread_cpu) / max(alerts, 1) * 1e6
        stages = timer.us_per_alert(alerts)
        stages["the loop itself (other)"] = max(0.0, per_alert - sum(stages.values()))
        account = Account(per_alert, cpu["service process"] - per_alert, stages)
    return rate, service.processor.decode_paths(), account


def scaling(values: dict[str, Any], instances: int, n: int) -> Throughput:
    """``instances`` service processes in one consumer group on the pre-loaded topic (started
    together, so that one rebalance shares the partitions); alerts/s from the first message any
    of them consumed to the last output any of them had acknowledged.

    With as many cores as instances or more, each instance gets its share of the cores (CPU
    affinity), as a pod gets its CPU limit: on 2 cores each of 2 instances has one core, and
    so runs its models inline (``model.inference`` auto)."""
    values = {**values, "stop_after_idle_s": INSTANCE_IDLE_S}
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    share = len(available) // instances

    def pin(i: int) -> Callable[[], None] | None:
        if not share:
            return None
        mine = set(available[i * share : (i + 1) * share])
        return lambda: os.sched_setaffinity(0, mine)

    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.instance", json.dumps(values)],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pin(i),
        )
        for i in range(instances)
    ]
    results = []
    for process in processes:
        out, _ = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"a service instance failed (exit {process.returncode})")
        results.append(json.loads(out))
    acknowledged = sum(r["acknowledged"] for r in results)
    if acknowledged < n:
        raise RuntimeError(f"the instances acknowledged {acknowledged} of {n} outputs")
    started = min(r["first_consumed_at"] for r in results if r["first_consumed_at"] is not None)
    ended = max(r["last_acknowledged_at"] for r in results if r["last_acknowledged_at"] is not None)
    # the instances' sampled counts, summed at every sampling time of any of them
    progress = Progress(n)
    timelines = [([t for t, _ in r["timeline"]], [c for _, c in r["timeline"]]) for r in results]
    for now in sorted(t for times, _ in timelines for t in times):
        at = [bisect.bisect_right(times, now) for times, _ in timelines]
        progress.update(sum(c[i - 1] for i, (_, c) in zip(at, timelines, strict=True) if i), now)
    return Throughput(acknowledged, ended - started, progress.per_second())


def offered(
    settings: Settings,
    partitions: int,
    load: list[str],
    survey: str = "ztf",
    broker_pid: int | None = None,
) -> tuple[LatencyMetrics, dict[str, float], dict[str, float]]:
    """The service, joined and idle on new topics, under a load produced by another process
    (``benchmarks.load`` with ``load``'s arguments); returns once every alert sent is scored,
    with the CPU time per alert of the service, its inference worker and the broker."""
    new_topics(settings, partitions)
    metrics = LatencyMetrics()
    with running(settings, metrics) as run:
        if not run.ready.wait(60):
            raise RuntimeError("the service got no partitions within 60 s")
        time.sleep(1.0)  # let the fetchers settle on the (empty) partitions
        meter = CpuMeter(
            {
                "service process": os.getpid(),
                "inference worker": run.service.inference_pid,
                "broker": broker_pid,
            }
        )
        produced = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.load",
                "--bootstrap",
                settings.kafka.bootstrap_servers,
                "--topic",
                settings.input.topics[0],
                "--survey",
                survey,
                *load,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        sent = json.loads(produced.stdout)
        if not run.wait_until(lambda s: s.stats.acknowledged >= sent["sent"], 300):
            raise RuntimeError(f"the service did not score the {sent['sent']:.0f} alerts sent")
        meter.stop()
    return metrics, sent, meter.us_per_alert(int(sent["sent"]))


def latency(
    settings: Settings, args: argparse.Namespace, rate: float, broker_pid: int | None
) -> Latency:
    """Latency percentiles of the service under a fixed offered load from another process."""
    load = ["--rate", str(rate), "--seconds", str(args.load_seconds)]
    metrics, sent, cpu = offered(settings, args.partitions, load, broker_pid=broker_pid)
    values = np.asarray(metrics.latencies_ms)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return Latency(
        rate,
        sent["rate"],
        len(values),
        float(p50),
        float(p95),
        float(p99),
        float(values.max()),
        settings.batch.flush_when_idle,
        cpu,
        dict(metrics.by_reason),
    )


def burst(settings: Settings, args: argparse.Namespace, survey: str, n: int) -> Burst:
    """The time to score ``n`` alerts produced at once into the joined, idle service."""
    metrics, sent, _ = offered(settings, args.partitions, ["--burst", str(n)], survey)
    size = float(np.mean([len(v) for _, v in workload.encoded_for(survey)]))
    seconds = (metrics.last_ack_ms - metrics.first_input_ms) / 1000
    return Burst(survey, int(sent["sent"]), seconds, sent["seconds"], size)


# -- stages --------------------------------------------------------------------------------


def stages(settings: Settings, n: int, survey: str = "ztf") -> dict[str, float]:
    """Microseconds per alert of each stage, run in isolation on ``n`` alerts of the survey's
    workload (``settings`` must be of that survey)."""
    processor = AlertProcessor(settings)
    values = [value for _, value in workload.messages(n, survey)]
    out: dict[str, float] = {}

    def timed(name: str, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        result = work()
        out[name] = (time.perf_counter() - started) / n * 1e6
        return result

    source = Lineage("bench", 0, 0, None)
    generic = AlertProcessor(
        settings.model_copy(
            update={"input": settings.input.model_copy(update={"decoder": "generic"})}
        )
    )
    timed(
        "decode (fastavro) + route + assemble, one at a time",
        lambda: [generic.rows_many([v], [source]) for v in values],
    )
    # As in the service: the garbage collector walks neither the models nor what was decoded
    # above; that would cost more than what is measured below.
    gc.collect()
    gc.freeze()
    size = settings.batch.max_rows
    sources = [source] * n

    def decode_batches() -> list[list[tuple[str, Row]] | InputError]:
        out: list[list[tuple[str, Row]] | InputError] = []
        for i in range(0, n, size):
            out += processor.rows_many(values[i : i + size], sources[i : i + size])
        return out

    routed = timed("decode + route + assemble, batches (service)", decode_batches)
    by_class: dict[str, list[Row]] = {}
    for rows in routed:
        for top, row in rows if isinstance(rows, list) else []:
            by_class.setdefault(top, []).append(row)

    def score_all() -> list[ScoredBatch]:
        return [
            score_now(processor, top, rows[i : i + size])
            for top, rows in by_class.items()
            for i in range(0, len(rows), size)
        ]

    scored = timed("score (batches of batch.max_rows, one thread)", score_all)
    encode = make_batch_encoder(settings.output.format)
    encoded = timed(
        "encode (a batch at once)",
        lambda: [v for b in scored for v in encode(b.columns, len(b.raw))],
    )
    producer = Producer(producer_config(settings.kafka))

    def produce_all() -> None:
        for value in encoded:
            while True:
                try:
                    producer.produce(settings.output.topic, value=value)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)

    timed("produce (until acknowledged)", produce_all)
    return out


def main(argv: list[str] | None = None) -> None:
    # SIGTERM stops it as Ctrl-C does: the context managers stop the embedded broker (a session
    # of its own, which the signal does not reach) and the services they started
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    args, rows, device = _arguments(argv)
    configure_logging("console", "warning")
    with broker() as kafka:
        report = Report(machine(), versions(), _run_config(kafka, args, device))
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        base = settings_for(kafka, topic, args)
        report.config |= {  # what the service rows score with (ALERT_ANOMALY_* included)
            "scorers": dict(base.model.scorers),
            "explain_features": base.model.explain_features,
            "explain_min_percentile": base.model.explain_min_percentile,
        }
        if "baseline" in rows:
            routing = baseline_settings_for(kafka, topic, args).model.scorers
            report.config["baseline_scorers"] = dict(routing)
        new_topics(base, args.partitions)
        preloaded = args.n if rows & ZTF_PRELOADED else 0
        print(f"pre-loading {preloaded} alerts into {topic} ...", flush=True)
        publish(kafka.bootstrap_servers, topic, workload.messages(preloaded))
        runs = _throughput_runs(kafka, topic, args, rows, report)
        if "rubin" in rows:  # on a topic of their own, deleted after them
            from benchmarks import rubin  # it builds on this module

            report.config.update(rubin.report_config(args, "stages" in rows))
            rubin_runs, report.rubin = rubin.measure(kafka, args, "stages" in rows)
            runs.update(rubin_runs)
        rates = {name: median_run(each) for name, each in runs.items()}
        report.runs = {
            name: [r.steady_per_second or r.per_second for r in each] for name, each in runs.items()
        }
        if "service" in rows:
            print("service, profiled (where its CPU time goes) ...", flush=True)
            _, _, report.account = saturation(
                settings_for(kafka, topic, args), args.n, kafka.pid, profile=True
            )
            drop_topics(base)
        # a run too short for a steady state (both marks passed at once): first to last
        report.throughput = {k: r.steady_per_second or r.per_second for k, r in rates.items()}
        report.first_to_last = {k: r.per_second for k, r in rates.items()}
        report.cpu_us_per_alert = {
            k: r.cpu_us_per_alert for k, r in rates.items() if r.cpu_us_per_alert
        }
        _latency_and_bursts(kafka, args, rows, report)
        if "stages" in rows:
            print("stages ...", flush=True)
            report.stages_us_per_alert = stages(base, min(args.n, 20000))
    report.ratios = _ratios(report.throughput, args.instances)
    report.targets = targets(report)
    print()
    print_report(report)
    path = args.json or RESULTS_DIR / (
        f"e2e-{device.split(':')[0]}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    result = asdict(report)
    for target, entry in zip(report.targets, result["targets"], strict=True):
        entry["met"] = target.met
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {path}")
    if args.strict and not all(target.met for target in report.targets):
        raise SystemExit(1)


def _arguments(argv: list[str] | None) -> tuple[argparse.Namespace, set[str], str]:
    """The command line, the rows it asks for and the device (a bad one: usage error)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=100000, help="alerts pre-loaded")
    parser.add_argument("--naive-n", type=int, default=2000, help="alerts for the naive loop")
    parser.add_argument("--peer-n", type=int, default=20000, help="alerts for the peer's loop")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of passthrough, peer, service and the instances, in turn; each row's median run "
        "counts",
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch-rows", type=int, default=1024)
    parser.add_argument("--max-delay-ms", type=float, default=20.0)
    parser.add_argument("--loads", default="1000,5000", help="offered loads (alerts/s)")
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument(
        "--flush-when-idle",
        choices=("shipped", "both"),
        default="both",
        help="latency rows with batch.flush_when_idle as shipped (on), or also with it off",
    )
    parser.add_argument("--bursts", default="10000,40000", help="burst sizes (alerts)")
    parser.add_argument(
        "--burst-surveys", default="ztf,lsst", help="workloads of the bursts: ztf, lsst"
    )
    parser.add_argument(
        "--rubin-n", type=int, default=20000, help="Rubin alert packets pre-loaded (~100 KB each)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    parser.add_argument(
        "--instances",
        type=int,
        default=2,
        help="also run this many service processes in one group (1: skip); at most --partitions",
    )
    parser.add_argument(
        "--rows",
        default=",".join(ROWS),
        help=f"what to measure, a subset of {','.join(ROWS)} (default: all)",
    )
    parser.add_argument("--json", type=Path, help="result file (default: benchmarks/results/)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is not met")
    args = parser.parse_args(argv)
    rows = set(args.rows.split(","))
    if rows - set(ROWS):
        parser.error(f"--rows: unknown {sorted(rows - set(ROWS))} (known: {', '.join(ROWS)})")
    try:
        device = str(resolve_device(args.device))
    except DataError as exc:
        parser.error(str(exc))
    return args, rows, device


def _run_config(kafka: Broker, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The run's configuration as the report states it."""
    return {
        "broker": kafka.description,
        "consumer_overrides": kafka.consumer,
        "alerts": args.n,
        "repeat": args.repeat,
        "steady_state": list(STEADY),
        "naive_alerts": args.naive_n,
        "peer_alerts": min(args.peer_n, args.n),
        "features_per_alert": len(workload.records()[0]["features"]),
        "partitions": args.partitions,
        "batch_rows": args.batch_rows,
        "max_delay_ms": args.max_delay_ms,
        "flush_when_idle": f"on (as shipped); latency rows: {args.flush_when_idle}",
        "device": device,
        "cores": cores(),
        "instances": args.instances,
        "instance_cores": "an equal share of the cores each (CPU affinity)",
    }


def _throughput_runs(
    kafka: Broker, topic: str, args: argparse.Namespace, rows: set[str], report: Report
) -> dict[str, list[Throughput]]:
    """The rows on the pre-loaded ``topic`` - passthrough, peer, service, baseline, alerce and
    the instances - in turn, ``--repeat`` times (each row's median run counts; naive once)."""
    base = settings_for(kafka, topic, args)
    payload = make_encoder("schemaless")(sample_output(base))
    runs: dict[str, list[Throughput]] = {}
    for turn in range(1, args.repeat + 1):
        of = f" (run {turn} of {args.repeat})" if args.repeat > 1 else ""
        if "passthrough" in rows:
            print(f"passthrough{of} ...", flush=True)
            runs.setdefault("passthrough", []).append(
                passthrough(settings_for(kafka, topic, args), args.n, payload, kafka.pid)
            )
            drop_topics(base)
        if "naive" in rows and turn == 1:
            print("naive ...", flush=True)
            runs["naive"] = [naive(settings_for(kafka, topic, args), args.naive_n)]
            drop_topics(base)
        if "peer" in rows:
            print(f"peer (ALeRCE's anomaly step's loop){of} ...", flush=True)
            n_peer = min(args.peer_n, args.n)
            runs.setdefault("peer", []).append(
                peer(settings_for(kafka, topic, args), n_peer, kafka.pid)
            )
            drop_topics(base)
        if "service" in rows:
            print(f"service{of} ...", flush=True)
            rate, report.decode_paths, _ = saturation(
                settings_for(kafka, topic, args), args.n, kafka.pid
            )
            runs.setdefault("service", []).append(rate)
            drop_topics(base)
        if "baseline" in rows:
            print(f"{BASELINE}{of} ...", flush=True)
            baseline = baseline_settings_for(kafka, topic, args)
            runs.setdefault(BASELINE, []).append(saturation(baseline, args.n, kafka.pid)[0])
            drop_topics(baseline)
        if "alerce" in rows:
            print(f"{ALERCE}{of} ...", flush=True)
            alerce = alerce_settings_for(kafka, topic, args)
            runs.setdefault(ALERCE, []).append(saturation(alerce, args.n, kafka.pid)[0])
            drop_topics(alerce)
        if "instances" in rows and args.instances > 1:
            print(f"service, {args.instances} instances{of} ...", flush=True)
            runs.setdefault(f"service x{args.instances} instances", []).append(
                scaling(settings_values(kafka, topic, args), args.instances, args.n)
            )
            drop_topics(base)
    return runs


def _latency_and_bursts(
    kafka: Broker, args: argparse.Namespace, rows: set[str], report: Report
) -> None:
    """The latency rows at each offered load and the bursts, each on a topic of its own."""
    for rate in (float(x) for x in args.loads.split(",") if x and "latency" in rows):
        print(f"latency at {rate:,.0f} alerts/s ...", flush=True)
        load_topic = f"bench-load-{uuid.uuid4().hex[:8]}"
        for idle in (True, False) if args.flush_when_idle == "both" else (True,):
            settings = settings_for(kafka, f"{load_topic}-{'on' if idle else 'off'}", args)
            settings = settings.model_copy(
                update={"batch": settings.batch.model_copy(update={"flush_when_idle": idle})}
            )
            report.latency.append(latency(settings, args, rate, kafka.pid))
            drop_topics(settings, inputs=True)
    if "rubin" in rows or ("bursts" in rows and "lsst" in args.burst_surveys.split(",")):
        report.packet_sizes = workload.lsst_packet_sizes()
    for survey in args.burst_surveys.split(",") if "bursts" in rows else []:
        for size in (int(x) for x in args.bursts.split(",") if x):
            print(f"a burst of {size:,} {survey} alerts ...", flush=True)
            burst_topic = f"bench-burst-{uuid.uuid4().hex[:8]}"
            settings = settings_for(kafka, burst_topic, args, survey)
            report.bursts.append(burst(settings, args, survey, size))
            drop_topics(settings, inputs=True)


def _ratios(t: dict[str, float], instances: int) -> dict[str, float]:
    """The rows' rates against each other (the rows this run measured)."""
    ratios: dict[str, float] = {}
    if "service" in t:
        ratios = {
            f"service/{name}": t["service"] / t[name]
            for name in ("passthrough", "naive", "peer")
            if name in t
        }
        if ALERCE in t:
            ratios["alerce/service"] = t[ALERCE] / t["service"]
        if BASELINE in t:
            ratios["service/baseline"] = t["service"] / t[BASELINE]
        scaled = f"service x{instances} instances"
        if scaled in t:
            ratios["instances/service"] = t[scaled] / t["service"]
    for name in (RUBIN_SERVICE, RUBIN_LIGHTCURVES):
        if name in t and RUBIN_PASSTHROUGH in t:
            ratios[f"{name}/{RUBIN_PASSTHROUGH}"] = t[name] / t[RUBIN_PASSTHROUGH]
    return ratios


def sample_output(settings: Settings, survey: str = "ztf") -> dict[str, Any]:
    """One anomaly-score record of the survey's workload (to size the passthrough's outputs)."""
    processor = AlertProcessor(settings)
    _, value = next(workload.messages(1, survey))
    [[(top, row)]] = processor.rows_many([value], [Lineage(settings.input.topics[0], 0, 0, 0)])
    return score_now(processor, top, [row]).records[0]
