"""An offered load: produce benchmark alerts at a fixed rate for a fixed time, in a process of
its own (so that it does not share the service's interpreter), and print what was sent as JSON.

    python -m benchmarks.load --bootstrap HOST:PORT --topic T --rate 1000 --seconds 10

Each message's timestamp is the producer's create time (the time of ``produce()``), so latency
measured against it includes the producer's own batching (``linger.ms``), as upstream it would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from confluent_kafka import Producer

from benchmarks.workload import encoded

TICK_S = 0.001


def offer(
    bootstrap: str, topic: str, rate: float, seconds: float, linger_ms: int
) -> dict[str, float]:
    """Produce ``rate`` messages/s for ``seconds``; returns counts and the achieved rate."""
    sample = encoded()
    total = int(rate * seconds)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "all"})
    failures = 0

    def delivered(error: object, _: object) -> None:
        nonlocal failures
        failures += error is not None

    sent = 0
    started = time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - started) * rate) + 1)
        while sent < due:
            key, value = sample[sent % len(sample)]
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                sent += 1
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        time.sleep(TICK_S)
    elapsed = time.monotonic() - started
    producer.flush(60)
    return {"sent": sent, "failures": failures, "seconds": elapsed, "rate": sent / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--linger-ms", type=int, default=5)
    args = parser.parse_args()
    result = offer(args.bootstrap, args.topic, args.rate, args.seconds, args.linger_ms)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
