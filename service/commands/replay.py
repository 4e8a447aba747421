"""``alert-anomaly replay`` and ``alert-anomaly score``: re-scoring archived alerts with the live
service's code path (see :mod:`service.replay`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from models.exceptions import ConfigurationError
from service.commands.args import add_setting_flags, examples, settings_of

MODEL_FLAGS = ("--survey", "--bundles", "--device", "--batch-rows")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "replay",
        epilog=examples(
            "alert-anomaly replay --bootstrap-servers kafka:9092 --topic "
            "lc_classifier_ztf_20261128 --since 2026-11-28T00:00 --out night/",
            "alert-anomaly replay --files archive/2026-11-28.tar.gz --out night/ --resume",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="re-score a bounded range of an archived topic, or Avro/Parquet files",
        description=(
            "Replay a topic range (by time, offsets or partitions; read with assign(): no "
            "consumer group is joined and no offset committed) or files (directories or "
            "tarballs of Avro alert files, Avro containers, Parquet/CSV tables in the "
            "simulator's layout), and write the scores to a topic or to a Parquet dataset "
            "directory. Stops at the end of the range. Parquet output is resumable (--resume)."
        ),
    )
    add_setting_flags(
        p,
        "--topic",
        "--bootstrap-servers",
        "--input-format",
        "--schema-version",
        "--output-topic",
        "--dead-letter-topic",
        *MODEL_FLAGS,
    )
    p.add_argument("--files", type=Path, nargs="+", help="files, directories or tarballs")
    p.add_argument("--partitions", help="comma-separated partitions (default: all)")
    p.add_argument("--since", help="first message time, ISO-8601 (UTC) or epoch ms, inclusive")
    p.add_argument("--until", help="end time, ISO-8601 (UTC) or epoch ms, exclusive")
    p.add_argument(
        "--start-offset", action="append", default=[], metavar="P:O", help="start of partition P"
    )
    p.add_argument(
        "--end-offset", action="append", default=[], metavar="P:O", help="end (exclusive) of P"
    )
    p.add_argument("--out", type=Path, help="Parquet dataset directory for the scores")
    p.add_argument("--resume", action="store_true", help="continue an interrupted --out replay")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run_replay)

    s = subparsers.add_parser(
        "score",
        epilog=examples(
            "alert-anomaly score objects.parquet scores.csv",
            "alert-anomaly score alerts.avro scores.parquet --device cuda",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="score a table or Avro file offline (no broker)",
        description=(
            "Score INPUT (Parquet/CSV table in the simulator's layout, or an Avro container of "
            "classifier records) with the same bundles and code as the service; OUTPUT is a "
            "Parquet or CSV file of anomaly-score records. Inputs that cannot be scored are "
            "counted by reason (with the first of each) and written beside OUTPUT "
            "(OUTPUT.dead-letters.parquet or .csv); exit status 2 when nothing was scored."
        ),
    )
    s.add_argument("input", type=Path, help="input table or Avro file")
    s.add_argument("output", type=Path, help="output .parquet or .csv")
    add_setting_flags(s, *MODEL_FLAGS)
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.set_defaults(handler=run_score)


def _partitions(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise ConfigurationError(
            f"--partitions expects comma-separated partition numbers, got {text!r}"
        ) from None


def _offsets(items: list[str], flag: str) -> dict[int, int]:
    out = {}
    for item in items:
        try:
            partition, offset = (int(x) for x in item.split(":"))
        except ValueError:
            raise ConfigurationError(f"{flag} expects PARTITION:OFFSET, got {item!r}") from None
        out[partition] = offset
    return out


def run_replay(args: argparse.Namespace) -> int:
    from service.commands.offline import conclude
    from service.core.offsets import OffsetTracker
    from service.core.processing import AlertProcessor
    from service.io.sinks import OutputSink
    from service.io.sinks.files import ParquetSink
    from service.io.sinks.kafka import KafkaSink
    from service.io.sources import InputSource
    from service.io.sources.files import FileSource
    from service.io.sources.topic_range import TopicRange
    from service.ops.availability import Brokers
    from service.ops.metrics import Metrics
    from service.replay import parse_time_ms, replay_with_settings

    if bool(args.topic) == bool(args.files):
        raise ConfigurationError("replay reads --topic TOPIC or --files PATH...: give one")
    if args.topic and len(args.topic) > 1:
        raise ConfigurationError("replay reads one --topic at a time")
    if bool(args.out) == bool(args.output_topic):
        raise ConfigurationError("replay writes to --out DIR or --output-topic TOPIC: give one")
    if args.files and (
        args.since or args.until or args.start_offset or args.end_offset or args.partitions
    ):
        raise ConfigurationError("--since/--until/offsets/--partitions apply to --topic")
    if args.resume and not args.out:
        raise ConfigurationError("--resume applies to --out (Parquet) replays")
    settings = settings_of(args, **_files_input(args.files))
    brokers = Brokers(settings.kafka.bootstrap_servers, settings.kafka.unavailable_timeout_s)
    processor = AlertProcessor(settings)
    tracker = OffsetTracker()
    sink: OutputSink
    resume: dict[str, Any] = {}
    if args.out:
        description = _describe(args)
        parquet = ParquetSink(args.out, description, args.resume, tracker.written)
        resume, sink, where = parquet.saved, parquet, str(args.out)
    else:
        sink = KafkaSink(settings, Metrics(), tracker.written, brokers)
        brokers.metadata(sink.producer, settings.output.topic)  # waits, says so, gives up
        where = f"topic {settings.output.topic}"
    source: InputSource
    if args.topic:
        source = TopicRange(
            {**settings.kafka.librdkafka(), **settings.kafka.consumer},
            settings.input.topics[0],
            _partitions(args.partitions),
            parse_time_ms(args.since) if args.since else None,
            parse_time_ms(args.until) if args.until else None,
            _offsets(args.start_offset, "--start-offset"),
            _offsets(args.end_offset, "--end-offset"),
            resume=resume,
            brokers=brokers,
        )
    else:
        source = FileSource(args.files, processor.survey.id_fields[0], resume)
    summary = replay_with_settings(
        settings, processor, source, sink, tracker, args.batch_rows, _label(args, "replay")
    )
    if args.out:
        full_list = f"_dead-letters-*.parquet in {args.out}"
    else:
        full_list = f"topic {settings.output.dead_letter_topic}"
    conclude(summary, where, settings, args.files or (), full_list)
    return 0


def _files_input(files: object) -> dict[str, Any]:
    """Files are Avro object containers (schema embedded), whatever input.format says."""
    return {"input": {"format": "container", "schema_version": None}} if files else {}


def _describe(args: argparse.Namespace) -> dict[str, Any]:
    """What a Parquet replay reads: a resumed replay must read the same."""
    if args.files:
        return {"kind": "files", "paths": [str(p) for p in args.files]}
    return {
        "kind": "topic",
        "topic": args.topic[0],
        "partitions": args.partitions,
        "since": args.since,
        "until": args.until,
        "start": sorted(args.start_offset),
        "end": sorted(args.end_offset),
    }


def _label(args: argparse.Namespace, label: str) -> str | None:
    """The progress bar's label, or None without a bar."""
    return None if args.no_progress else label


def run_score(args: argparse.Namespace) -> int:
    from service.commands.offline import NothingScoredError, conclude
    from service.core.offsets import OffsetTracker
    from service.core.processing import AlertProcessor
    from service.io.sinks.files import (
        CollectingSink,
        dead_letters_path,
        write_dead_letters_file,
        write_scores_file,
    )
    from service.io.sources.files import FileSource
    from service.replay import replay_with_settings

    if args.output.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigurationError(f"OUTPUT must end in .parquet or .csv, got {args.output.name}")
    settings = settings_of(args, **_files_input(True))
    processor = AlertProcessor(settings)
    tracker = OffsetTracker()
    sink = CollectingSink(tracker.written)
    source = FileSource([args.input], processor.survey.id_fields[0])
    summary = replay_with_settings(
        settings, processor, source, sink, tracker, args.batch_rows, _label(args, "score")
    )
    if not summary.read:
        raise NothingScoredError(f"{args.input} holds no alerts: nothing to score")
    if sink.records:  # nothing scored: no OUTPUT (conclude says why)
        sink.records.sort(key=lambda r: (r["source_topic"], r["source_offset"]))  # input order
        write_scores_file(sink.records, args.output)
    full_list, dead = None, dead_letters_path(args.output)
    if sink.dead:
        full_list = str(dead)
        write_dead_letters_file(sink.dead, dead)
    else:
        dead.unlink(missing_ok=True)  # an earlier run's
    conclude(summary, str(args.output), settings, [args.input], full_list)
    return 0
