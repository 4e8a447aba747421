"""``alert-anomaly publish-sample``: the committed sample alerts onto a running broker (the
compose stack's one-shot producer; also a quick way to feed a test deployment)."""

from __future__ import annotations

import argparse

from models.exceptions import ConfigurationError
from service.commands.args import add_setting_flags, examples, positive_int, settings_of


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "publish-sample",
        epilog=examples(
            "alert-anomaly publish-sample --bootstrap-servers kafka:9092 --topic "
            "lc_classifier --poison"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="publish the committed sample alerts to a topic of a running broker",
        description=(
            "Publish the committed synthetic sample as ZTF classifier records (schemaless Avro, "
            "key = oid) to a topic, by default the first of input.topics. The connection comes "
            "from the kafka.* settings (--config, ALERT_ANOMALY_* variables, the options below), "
            "as for run. Exits once the broker has acknowledged every message."
        ),
    )
    add_setting_flags(p, "--bootstrap-servers", "--topic")
    p.add_argument("--n", type=positive_int, help="publish only the first N sample alerts")
    p.add_argument(
        "--poison", action="store_true", help="append four bad messages (dead-letter path)"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service.demo import poison_messages, publish, sample_messages
    from service.ops.availability import Brokers

    settings = settings_of(args)
    topic = next(iter(settings.input.topics), None)
    if topic is None:
        raise ConfigurationError("no topic: pass --topic or set input.topics")
    messages: list[tuple[bytes | None, bytes]] = list(sample_messages(args.n))
    good = len(messages)
    if args.poison:
        messages += [(key, value) for key, value, _ in poison_messages()]
    kafka = settings.kafka
    brokers = Brokers(kafka.bootstrap_servers, kafka.unavailable_timeout_s)
    publish(kafka.bootstrap_servers, topic, messages, client=kafka.librdkafka(), brokers=brokers)
    bad = len(messages) - good
    print(f"published {good} sample alerts and {bad} bad messages to {topic}")
    return 0
