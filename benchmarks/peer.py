"""The peer: the loop of ALeRCE's anomaly step as it runs today (alercebroker/pipeline
``lc_anomaly_step``, a copy of its classification step on the apf framework: consume up to
``CONSUME_MESSAGES`` = 1,000 messages, decode each with fastavro's schemaless reader, build a
pandas DataFrame of the features, predict the batch, produce every output, commit synchronously
once the batch is done), here with the service's own networks on the CPU so that only the loop
differs."""

from __future__ import annotations

import io
import os
import time

import fastavro
import numpy as np
import pandas as pd
import torch
from confluent_kafka import Consumer, Producer, TopicPartition

from benchmarks.common import CpuMeter, Progress, Throughput, score_record
from service.config import Settings
from service.core.processing import AlertProcessor
from service.io.codecs.avro import output_schema
from service.io.kafka import consumer_config, producer_config

BATCH = 1000  # the step's CONSUME_MESSAGES default


def peer(settings: Settings, n: int, broker_pid: int | None = None) -> Throughput:
    """Score ``n`` alerts as ALeRCE's anomaly step would (see the module docstring)."""
    torch.set_num_threads(1)
    processor = AlertProcessor(settings)
    survey = processor.survey
    schema = fastavro.parse_schema(survey.schema(settings.input.schema_version))
    out_schema = output_schema()
    consumer = Consumer(consumer_config(settings.kafka, settings.input.group_id, "earliest"))
    producer = Producer(producer_config(settings.kafka))
    consumer.subscribe(settings.input.topics)
    count, started = 0, 0.0
    progress = Progress(n)
    meter = CpuMeter({})
    try:
        while count < n:
            messages = [m for m in consumer.consume(BATCH, 0.5) if m.error() is None]
            if not messages:
                continue
            if not count:
                started = time.monotonic()
                meter = CpuMeter({"client": os.getpid(), "broker": broker_pid})
            records = [
                fastavro.schemaless_reader(io.BytesIO(m.value() or b""), schema, None)
                for m in messages
            ]
            features = pd.DataFrame([r["features"] for r in records], dtype="float64")
            top = pd.DataFrame([r["lc_classification"]["hierarchical"]["top"] for r in records])
            routed = top.idxmax(axis=1)
            for top_class, index in routed.groupby(routed).groups.items():
                route = processor.routes[top_class]
                names = list(route.feature_names)
                x = features.reindex(columns=names).loc[index].to_numpy(np.float32)
                scores = route.scorer.score(x)
                for k, i in enumerate(index):
                    message, record = messages[i], records[i]
                    output = score_record(
                        message,
                        record[survey.id_fields[0]],
                        survey.name,
                        top_class,
                        float(top.loc[i, top_class]),
                        route,
                        (float(scores.raw[k]), float(scores.percentile[k]), scores.nearest[k]),
                        None,
                    )
                    buffer = io.BytesIO()
                    fastavro.schemaless_writer(buffer, out_schema, output)
                    while True:
                        try:
                            producer.produce(
                                settings.output.topic, value=buffer.getvalue(), key=message.key()
                            )
                            break
                        except BufferError:
                            producer.poll(0.05)
            producer.flush(60)  # every output written ...
            ends = {(m.topic(), m.partition()): (m.offset() or 0) + 1 for m in messages}
            offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
            consumer.commit(offsets=offsets, asynchronous=False)  # ... then the batch's offsets
            count += len(messages)
            progress.update(count, time.monotonic())
        meter.stop()
        return Throughput(
            count, time.monotonic() - started, progress.per_second(), meter.us_per_alert(count)
        )
    finally:
        consumer.close()
