"""``alert-anomaly replay`` and ``alert-anomaly score``: re-scoring archived alerts with the live
service's code path (see :mod:`service.replay`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from models.exceptions import ConfigurationError
from service.codec import make_encoder
from service.commands.args import positive_int
from service.config import Settings, load_settings
from service.processing import AlertProcessor, start_inference
from service.replay import (
    FileSource,
    ParquetSink,
    ReplaySource,
    Sink,
    Summary,
    TopicRange,
    TopicSink,
    parse_time_ms,
    replay,
    write_scores_file,
)


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="settings file (.toml, .yaml), as for run")
    p.add_argument("--survey", help="survey adapter, ztf or lsst (model.survey)")
    p.add_argument("--bundles", type=Path, help="bundle root (model.bundles_dir)")
    p.add_argument("--device", help="torch device: auto, cpu, cuda (model.device)")
    p.add_argument("--batch-rows", type=positive_int, help="rows per scored batch")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "replay",
        help="re-score a bounded range of an archived topic, or Avro/Parquet files",
        description=(
            "Replay a topic range (by time, offsets or partitions; read with assign(): no "
            "consumer group is joined and no offset committed) or files (directories or "
            "tarballs of Avro alert files, Avro containers, Parquet/CSV tables in the "
            "simulator's layout), and write the scores to a topic or to a Parquet dataset "
            "directory. Stops at the end of the range. Parquet output is resumable (--resume)."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--topic", help="archived topic to replay")
    source.add_argument("--files", type=Path, nargs="+", help="files, directories or tarballs")
    p.add_argument("--bootstrap-servers", help="Kafka brokers (kafka.bootstrap_servers)")
    p.add_argument("--input-format", help="format of topic messages (input.format)")
    p.add_argument(
        "--schema-version", help="record version of topic messages (input.schema_version)"
    )
    p.add_argument("--partitions", help="comma-separated partitions (default: all)")
    p.add_argument("--since", help="first message time, ISO-8601 (UTC) or epoch ms, inclusive")
    p.add_argument("--until", help="end time, ISO-8601 (UTC) or epoch ms, exclusive")
    p.add_argument(
        "--start-offset", action="append", default=[], metavar="P:O", help="start of partition P"
    )
    p.add_argument(
        "--end-offset", action="append", default=[], metavar="P:O", help="end (exclusive) of P"
    )
    sink = p.add_mutually_exclusive_group(required=True)
    sink.add_argument("--out", type=Path, help="Parquet dataset directory for the scores")
    sink.add_argument("--output-topic", help="topic for the scores")
    p.add_argument("--dead-letter-topic", help="dead letters with --output-topic")
    p.add_argument("--resume", action="store_true", help="continue an interrupted --out replay")
    _model_arguments(p)
    p.set_defaults(handler=run_replay)

    s = subparsers.add_parser(
        "score",
        help="score a table or Avro file offline (no broker)",
        description=(
            "Score INPUT (Parquet/CSV table in the simulator's layout, or an Avro container of "
            "classifier records) with the same bundles and code as the service; OUTPUT is a "
            "Parquet or CSV file of anomaly-score records."
        ),
    )
    s.add_argument("input", type=Path, help="input table or Avro file")
    s.add_argument("output", type=Path, help="output .parquet or .csv")
    _model_arguments(s)
    s.set_defaults(handler=run_score)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    model = {
        k: v
        for k, v in (
            ("survey", args.survey),
            ("bundles_dir", args.bundles),
            ("device", args.device),
        )
        if v is not None
    }
    if model:
        overrides["model"] = model
    if getattr(args, "bootstrap_servers", None):
        overrides["kafka"] = {"bootstrap_servers": args.bootstrap_servers}
    inputs = {
        k: v
        for k, v in (
            ("format", getattr(args, "input_format", None)),
            ("schema_version", getattr(args, "schema_version", None)),
        )
        if v is not None
    }
    if inputs:
        overrides["input"] = inputs
    return load_settings(args.config, overrides)


def _offsets(items: list[str], flag: str) -> dict[int, int]:
    out = {}
    for item in items:
        try:
            partition, offset = (int(x) for x in item.split(":"))
        except ValueError:
            raise ConfigurationError(f"{flag} expects PARTITION:OFFSET, got {item!r}") from None
        out[partition] = offset
    return out


def _print(summary: Summary, where: str) -> None:
    print(
        f"read {summary.read}, scored {summary.scored}, dead-lettered {summary.dead_lettered}"
        + (
            f", skipped {len(summary.skipped)} unreadable: {summary.skipped}"
            if summary.skipped
            else ""
        )
        + f" in {summary.seconds:.1f} s -> {where}"
    )


def run_replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    source: ReplaySource
    if args.topic:
        source = TopicRange(
            settings.kafka.librdkafka(),
            args.topic,
            [int(p) for p in args.partitions.split(",")] if args.partitions else None,
            parse_time_ms(args.since) if args.since else None,
            parse_time_ms(args.until) if args.until else None,
            _offsets(args.start_offset, "--start-offset"),
            _offsets(args.end_offset, "--end-offset"),
        )
    else:
        if args.since or args.until or args.start_offset or args.end_offset or args.partitions:
            raise ConfigurationError("--since/--until/offsets/--partitions apply to --topic")
        source = FileSource(args.files)
    processor = AlertProcessor(settings)
    sink: Sink
    resume_state = None
    if args.out:
        parquet = ParquetSink(args.out, source.describe(), args.resume)
        resume_state, sink, where = parquet.state, parquet, str(args.out)
    else:
        if args.resume:
            raise ConfigurationError("--resume applies to --out (Parquet) replays")
        encoder = make_encoder(settings.output.format, settings.output.confluent_schema_id)
        dead = args.dead_letter_topic or settings.output.dead_letter_topic
        sink = TopicSink(settings.kafka.librdkafka(), args.output_topic, dead, encoder)
        where = f"topic {args.output_topic}"
    summary = _replay(args, settings, processor, source, sink, resume_state)
    _print(summary, where)
    return 0


def _replay(
    args: argparse.Namespace,
    settings: Settings,
    processor: AlertProcessor,
    source: ReplaySource,
    sink: Sink,
    resume_state: dict[str, Any] | None = None,
) -> Summary:
    """:func:`replay` with the configured inference (a worker process on 2+ cores)."""
    batch_rows = args.batch_rows or settings.batch.max_rows
    inference = start_inference(settings, processor.routes, batch_rows)
    try:
        return replay(
            processor,
            source,
            sink,
            resume_state,
            batch_rows=batch_rows,
            progress=not args.no_progress,
            inference=inference,
        )
    finally:
        inference.close()


class _Collect:
    """A sink keeping scores in memory (offline scoring writes one file at the end)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.dead: list[str] = []

    def write(self, records: list[dict[str, Any]]) -> None:
        self.records.extend(records)

    def dead_letter(self, unit: Any, error: Any) -> None:
        self.dead.append(
            json.dumps(
                {
                    "source": unit.source.topic,
                    "offset": unit.source.offset,
                    "reason": error.reason,
                    "error": str(error),
                }
            )
        )

    def checkpoint(self, state: dict[str, Any], summary: Summary) -> None:
        pass

    def close(self) -> None:
        pass


def run_score(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigurationError(f"OUTPUT must end in .parquet or .csv, got {args.output.name}")
    settings = _settings(args)
    processor = AlertProcessor(settings)
    sink = _Collect()
    summary = _replay(args, settings, processor, FileSource([args.input]), sink)
    sink.records.sort(key=lambda r: (r["source_topic"], r["source_offset"]))  # input order
    write_scores_file(sink.records, args.output)
    for line in sink.dead:
        print(f"not scored: {line}")
    _print(summary, str(args.output))
    return 0
