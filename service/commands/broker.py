"""``alert-anomaly broker``: the embedded Kafka-protocol broker alone, for local development."""

from __future__ import annotations

import argparse
import queue
import signal
from types import FrameType

from service.commands.args import comma_list, examples, positive_int
from service.exceptions import KafkaServiceError

EXIT_CHECK_S = 1.0  # how often the command checks that its broker still runs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "broker",
        epilog=examples(
            "alert-anomaly broker --port 9092 --topics lc_classifier,anomaly-scores --partitions 4"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run the embedded Kafka-protocol broker (tansu) until interrupted",
        description=(
            "Run the embedded broker (memory storage unless --storage) for development. A port "
            "in use, or a broker that exits, is an error (exit status 2)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=positive_int, default=9092, help="port (default 9092)")
    p.add_argument("--storage", default="memory://tansu/", help="tansu storage engine URL")
    p.add_argument("--topics", type=comma_list, help="topics to create, comma-separated")
    p.add_argument("--partitions", type=positive_int, default=1, help="partitions per topic")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service.config import KafkaSettings
    from service.io.embedded import EmbeddedBroker
    from service.io.kafka import create_topics

    # SimpleQueue.put is safe in a signal handler (an Event's set takes a lock the interrupted
    # main thread may hold)
    stops: queue.SimpleQueue[int] = queue.SimpleQueue()

    def stop(signum: int, frame: FrameType | None) -> None:
        stops.put(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with EmbeddedBroker(args.host, args.port, args.storage) as broker:
        if args.topics:
            create_topics(
                KafkaSettings(bootstrap_servers=broker.bootstrap_servers),
                args.topics,
                args.partitions,
            )
        print(f"broker listening on {broker.bootstrap_servers} (Ctrl-C to stop)", flush=True)
        while not _stopped(stops):
            status = broker.exit_status
            if status is not None:
                raise KafkaServiceError(f"the embedded broker exited with status {status}")
    return 0


def _stopped(stops: queue.SimpleQueue[int]) -> bool:
    """A signal came (waits at most :data:`EXIT_CHECK_S` for one)."""
    try:
        stops.get(timeout=EXIT_CHECK_S)
    except queue.Empty:
        return False
    return True
