"""``alert-anomaly replay`` and ``alert-anomaly score``: re-scoring archived alerts with the live
service's code path, as presets of the pipeline (:meth:`service.pipeline.Pipeline.replay`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from models.exceptions import ConfigurationError
from service.commands.args import add_setting_flags, examples, settings_of
from service.commands.replay_cluster import add_cluster_flags, on_cluster, run_cluster_replay
from service.io.storage import is_uri, location

MODEL_FLAGS = ("--survey", "--bundles", "--device", "--batch-rows")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "replay",
        epilog=examples(
            "alert-anomaly replay --bootstrap-servers kafka:9092 --topic "
            "lc_classifier_ztf_20261128 --since 2026-11-28T00:00 --out night/",
            "alert-anomaly replay --files archive/2026-11-28.tar.gz --out night/ --resume",
            "alert-anomaly replay --files s3://archive/ztf/2026-11-28/ --out s3://scores/night/",
            "alert-anomaly replay --bootstrap-servers kafka:9092 --topic lc_classifier_ztf "
            "--out s3://scores/ztf/ --scheduler tcp://scheduler:8786",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="re-score a bounded range of an archived topic, or Avro/Parquet files",
        description=(
            "Replay a topic range (by time, offsets or partitions; read with assign(): no "
            "consumer group is joined and no offset committed) or files (directories or "
            "tarballs of Avro alert files, Avro containers, Parquet/CSV tables in the "
            "simulator's layout), and write the scores to a topic or to a Parquet dataset "
            "directory. Stops at the end of the range. Parquet output is resumable (--resume). "
            "With --workers or --scheduler, a topic range is replayed on a Dask cluster."
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
    p.add_argument(
        "--files",
        type=location,
        nargs="+",
        help="files, directories or tarballs (local, or s3://bucket/key URIs)",
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
    p.add_argument("--out", type=location, help="Parquet dataset directory (or s3://bucket/prefix)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted --out replay")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_cluster_flags(p)
    p.set_defaults(handler=run_replay)

    s = subparsers.add_parser(
        "score",
        epilog=examples(
            "alert-anomaly score objects.parquet scores.csv",
            "alert-anomaly score alerts.avro scores.parquet --device cuda",
            "alert-anomaly score s3://archive/objects.parquet scores.parquet",
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
    s.add_argument("input", type=location, help="input table or Avro file (or an s3:// URI)")
    s.add_argument("output", type=location, help="output .parquet or .csv (a local file)")
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
    if on_cluster(args):
        if not (args.topic and args.out):
            raise ConfigurationError(
                "--workers/--scheduler replay a --topic range into --out (files: use `batch`)"
            )
        # inference inline on the workers: a Dask worker is a daemon process, it starts none
        fixed = {"output": {"kind": "memory"}, "model": {"inference": "inline"}}
        return run_cluster_replay(args, settings_of(args, input=_replay_input(args), **fixed))
    output: dict[str, Any] = (
        {"kind": "parquet", "path": args.out, "resume": args.resume}
        if args.out
        else {"kind": "kafka"}
    )
    settings = settings_of(args, input=_replay_input(args), output=output)
    from service.commands.offline import conclude  # after the checks: they take no seconds
    from service.io.sinks.kafka import KafkaSink
    from service.pipeline import Pipeline

    pipeline = Pipeline(settings)
    sink = pipeline.make_sink()
    if isinstance(sink, KafkaSink):  # waits for the output topic, says so, gives up
        topics = sink.topics()  # today's, with output.topic_strategy daily
        pipeline.brokers.metadata(sink.producer, topics.scores)
        where, full_list = f"topic {topics.scores}", f"topic {topics.dead_letters}"
    else:
        where, full_list = str(args.out), f"_dead-letters-*.parquet in {args.out}"
    summary = pipeline.replay(sink=sink, progress=_label(args, "replay"))
    conclude(summary, where, settings, args.files or (), full_list)
    return 0


def _replay_input(args: argparse.Namespace) -> dict[str, Any]:
    """The replay's source: files (Avro object containers, schema embedded, whatever
    input.format says) or a range of the topic."""
    if args.files:
        return _files_input(args.files)
    return {
        "kind": "topic_range",
        "partitions": _partitions(args.partitions),
        "since": args.since,
        "until": args.until,
        "start_offsets": _offsets(args.start_offset, "--start-offset"),
        "end_offsets": _offsets(args.end_offset, "--end-offset"),
    }


def _files_input(paths: list[Path | str]) -> dict[str, Any]:
    """Files as the source: Avro object containers (schema embedded) or tables, whatever
    input.format says."""
    return {"kind": "files", "paths": paths, "format": "container", "schema_version": None}


def _label(args: argparse.Namespace, label: str) -> str | None:
    """The progress bar's label, or None without a bar."""
    return None if args.no_progress else label


def run_score(args: argparse.Namespace) -> int:
    if is_uri(args.output):
        raise ConfigurationError(
            "score writes OUTPUT to a local file; for object storage use "
            "`replay --files INPUT --out s3://bucket/prefix`"
        )
    if args.output.suffix.lower() not in (".parquet", ".csv"):
        raise ConfigurationError(f"OUTPUT must end in .parquet or .csv, got {args.output.name}")
    settings = settings_of(args, input=_files_input([args.input]), output={"kind": "memory"})
    from service.commands.offline import NothingScoredError, conclude  # after the checks
    from service.io.sinks.files import (
        CollectingSink,
        dead_letters_path,
        write_dead_letters_file,
        write_scores_file,
    )
    from service.pipeline import Pipeline

    pipeline = Pipeline(settings)
    sink = pipeline.make_sink()
    assert isinstance(sink, CollectingSink)
    summary = pipeline.replay(sink=sink, progress=_label(args, "score"))
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
