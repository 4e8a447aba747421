"""``alert-anomaly run``: the streaming scoring service."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import structlog

from service.commands.args import positive_int
from service.config import Settings, load_settings
from service.metrics import Health, Metrics, MetricsServer
from service.pipeline import ScoringService

log = structlog.get_logger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        help="consume classifier records, score anomalies, produce scores (the service)",
        description=(
            "Run the streaming service. Settings come from --config (TOML or YAML), "
            "ALERT_ANOMALY_* environment variables and the options below (highest precedence); "
            "see the README's configuration reference. SIGTERM/SIGINT drain, commit and exit 0."
        ),
    )
    add_settings_arguments(p)
    p.add_argument(
        "--check", action="store_true", help="validate the settings, load the models, and exit"
    )
    p.set_defaults(handler=run)


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings file (.toml, .yaml)")
    p.add_argument("--bootstrap-servers", help="Kafka brokers (kafka.bootstrap_servers)")
    p.add_argument(
        "--topic", action="append", dest="topics", help="input topic (repeatable; input.topics)"
    )
    p.add_argument("--group-id", help="consumer group (input.group_id)")
    p.add_argument(
        "--input-format",
        choices=("schemaless", "container", "confluent", "json"),
        help="input format (input.format)",
    )
    p.add_argument(
        "--schema-version",
        help="record version of the survey's classifier records (input.schema_version)",
    )
    p.add_argument("--output-topic", help="score topic (output.topic)")
    p.add_argument("--dead-letter-topic", help="dead-letter topic (output.dead_letter_topic)")
    p.add_argument("--survey", help="survey adapter, ztf or lsst (model.survey)")
    p.add_argument("--bundles", type=Path, help="bundle root (model.bundles_dir)")
    p.add_argument("--device", help="torch device: auto, cpu, cuda (model.device)")
    p.add_argument("--batch-rows", type=positive_int, help="micro-batch size (batch.max_rows)")
    p.add_argument("--batch-delay-ms", type=float, help="micro-batch deadline (batch.max_delay_ms)")
    p.add_argument("--metrics-port", type=int, help="port of /metrics (metrics_port; 0: any)")
    p.add_argument(
        "--stop-after-idle", type=float, help="exit after this many idle seconds (batch jobs)"
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Nested settings from the command-line options that were given."""
    paths = {
        "bootstrap_servers": ("kafka", "bootstrap_servers"),
        "topics": ("input", "topics"),
        "group_id": ("input", "group_id"),
        "input_format": ("input", "format"),
        "schema_version": ("input", "schema_version"),
        "output_topic": ("output", "topic"),
        "dead_letter_topic": ("output", "dead_letter_topic"),
        "survey": ("model", "survey"),
        "bundles": ("model", "bundles_dir"),
        "device": ("model", "device"),
        "batch_rows": ("batch", "max_rows"),
        "batch_delay_ms": ("batch", "max_delay_ms"),
        "metrics_port": ("metrics_port",),
        "stop_after_idle": ("stop_after_idle_s",),
    }
    out: dict[str, Any] = {}
    for name, path in paths.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def serve(settings: Settings, service: ScoringService, health: Health) -> MetricsServer | None:
    if settings.metrics_port is None:
        return None
    server = MetricsServer(service.metrics, health, "0.0.0.0", settings.metrics_port).start()
    log.info("metrics_serving", url=f"http://127.0.0.1:{server.port}/metrics")
    return server


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, overrides(args))
    metrics, health = Metrics(), Health()

    def ready(state: bool) -> None:
        health.ready = state

    service = ScoringService(settings, metrics, on_ready=ready)
    if args.check:
        print(
            f"settings valid; models: {', '.join(r.bundle.name for r in service.routes.values())}"
        )
        return 0

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = serve(settings, service, health)
    try:
        service.run(heartbeat=health.tick)
    finally:
        if server is not None:
            server.stop()
    return 0
