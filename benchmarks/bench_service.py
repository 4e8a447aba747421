"""Throughput of the streaming service on the embedded broker (tansu), in-process.

Publishes N sample alerts (the committed sample, repeated) to a 2-partition topic, then runs the
service until every message is acknowledged and prints messages/s from the first message
consumed to the last output acknowledged, for a few micro-batch sizes.

    python benchmarks/bench_service.py [--n 20000] [--batch-rows 64,1024] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import threading
import time
import uuid

from common import cores, machine

from service.config import load_settings
from service.demo import publish, sample_messages
from service.embedded import EmbeddedBroker
from service.kafka import create_topics
from service.logs import configure_logging
from service.pipeline import ScoringService


def messages(n: int) -> list[tuple[bytes, bytes]]:
    sample = list(sample_messages())
    return [sample[i % len(sample)] for i in range(n)]


def run_once(bootstrap: str, n: int, batch_rows: int, profile: bool) -> float:
    prefix = uuid.uuid4().hex[:8]
    topic, out, dlq = f"{prefix}-in", f"{prefix}-out", f"{prefix}-dlq"
    settings = load_settings(
        None,
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "consumer": {"session.timeout.ms": "6000"},
            },
            "input": {"topics": [topic], "group_id": prefix},
            "output": {"topic": out, "dead_letter_topic": dlq},
            "batch": {"max_rows": batch_rows},
            "metrics_port": None,
        },
    )
    create_topics(settings.kafka, [topic], partitions=2)
    create_topics(settings.kafka, [out, dlq])
    publish(bootstrap, topic, messages(n))
    service = ScoringService(settings)

    def stop_when_done() -> None:
        while service.stats.acknowledged < n:
            time.sleep(0.01)
        service.stop()

    threading.Thread(target=stop_when_done, daemon=True).start()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    service.run()  # in this thread, so that the profiler sees it
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return service.stats.throughput()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--batch-rows", default="64,1024")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    configure_logging("console", "warning")
    print(machine(), f"({cores()} cores)")
    with EmbeddedBroker() as broker:
        for rows in (int(r) for r in args.batch_rows.split(",")):
            rate = run_once(broker.bootstrap_servers, args.n, rows, args.profile)
            print(f"{args.n} alerts, batch.max_rows {rows:5d}: {rate:10,.0f} messages/s")


if __name__ == "__main__":
    main()
