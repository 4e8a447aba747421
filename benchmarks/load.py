"""An offered load: produce benchmark alerts at a fixed rate for a fixed time, in a process of
its own (so that it does not share the service's interpreter), and print what was sent as JSON.

    python -m benchmarks.load --bootstrap HOST:PORT --topic T --rate 1000 --seconds 10
    python -m benchmarks.load --bootstrap HOST:PORT --topic T --burst 10000 --survey lsst

Each message's timestamp is the producer's create time (the time of ``produce()``), so latency
measured against it includes the producer's own batching (``linger.ms``), as upstream it would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from confluent_kafka import Producer

from benchmarks.workload import encoded_for

TICK_S = 0.001


def offer(
    bootstrap: str, topic: str, total: int, rate: float | None, linger_ms: int, survey: str = "ztf"
) -> dict[str, float]:
    """Produce ``total`` messages at ``rate`` messages/s (None: a burst, as fast as the producer
    goes); returns counts and the achieved rate."""
    sample = encoded_for(survey)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms, "acks": "all"})
    failures = 0

    def delivered(error: object, _: object) -> None:
        nonlocal failures
        failures += error is not None

    sent = 0
    started = time.monotonic()
    while sent < total:
        elapsed = time.monotonic() - started
        due = total if rate is None else min(total, int(elapsed * rate) + 1)
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
    parser.add_argument("--rate", type=float, help="messages/s (with --seconds)")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--burst", type=int, help="produce this many messages at once instead")
    parser.add_argument("--survey", choices=("ztf", "lsst"), default="ztf")
    parser.add_argument("--linger-ms", type=int, default=5)
    args = parser.parse_args()
    if args.burst is not None:
        total, rate = args.burst, None
    elif args.rate is not None and args.seconds is not None:
        total, rate = int(args.rate * args.seconds), args.rate
    else:
        parser.error("give --rate and --seconds, or --burst")
    result = offer(args.bootstrap, args.topic, total, rate, args.linger_ms, args.survey)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
