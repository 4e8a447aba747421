"""Replay throughput (messages/s): from a topic on the embedded broker, from a directory of
one-alert Avro files (ZTF archive style) and from a Parquet table, all to a Parquet output.

    python benchmarks/bench_replay.py [--n 20000]
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

import fastavro
from common import TANSU_CONSUMER, cores, machine

from models.records import input_records, input_schema
from models.resources import sample_dir
from models.table import read_table
from service.config import KafkaSettings, Settings, load_settings
from service.core.inference import choose_mode
from service.core.processing import AlertProcessor
from service.demo import publish, sample_messages
from service.io.embedded import EmbeddedBroker
from service.io.kafka import create_topics
from service.io.sinks.files import ParquetSink
from service.io.sources import InputSource
from service.io.sources.files import FileSource
from service.io.sources.topic_range import TopicRange
from service.ops.logs import configure_logging
from service.pipeline import Pipeline


def timed(
    processor: AlertProcessor, settings: Settings, source: InputSource, out: Path
) -> tuple[int, float]:
    """Messages scored and seconds taken by one replay into a Parquet dataset at ``out`` (the
    start of its inference not counted)."""
    pipeline = Pipeline(settings, processor=processor)
    sink = ParquetSink(out, {"benchmark": str(out)}, False, pipeline.tracker.written)
    summary = pipeline.replay(source, sink, progress=None)
    return summary.scored, summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100000, help="messages in the topic")
    args = parser.parse_args()
    configure_logging("console", "warning")
    print(machine(), f"({cores()} cores)")
    settings = load_settings(None)
    processor = AlertProcessor(settings)
    files = AlertProcessor(load_settings(None, {"input": {"format": "container"}}))
    mode = settings.model.inference
    print(f"inference: {choose_mode(mode)} (model.inference = {mode})")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with EmbeddedBroker() as broker:
            create_topics(KafkaSettings(bootstrap_servers=broker.bootstrap_servers), ["b"], 2)
            sample = list(sample_messages())
            publish(broker.bootstrap_servers, "b", (sample[i % len(sample)] for i in range(args.n)))
            client = {
                **KafkaSettings(bootstrap_servers=broker.bootstrap_servers).librdkafka(),
                **TANSU_CONSUMER,
            }
            n, seconds = timed(processor, settings, TopicRange(client, "b"), tmp / "topic")
            print(f"topic, 2 partitions:      {n:6d} messages {n / seconds:10,.0f} messages/s")
        alerts = tmp / "alerts"
        alerts.mkdir()
        for record in input_records(read_table(sample_dir() / "objects.parquet")):
            buffer = io.BytesIO()
            fastavro.writer(buffer, input_schema(), [record])
            (alerts / f"{record['oid']}.avro").write_bytes(buffer.getvalue())
        n, seconds = timed(files, settings, FileSource([alerts]), tmp / "files")
        print(f"one-alert Avro files:     {n:6d} messages {n / seconds:10,.0f} messages/s")
        table = sample_dir() / "objects.parquet"
        n, seconds = timed(processor, settings, FileSource([table]), tmp / "table")
        print(f"Parquet table rows:       {n:6d} messages {n / seconds:10,.0f} messages/s")


if __name__ == "__main__":
    main()
