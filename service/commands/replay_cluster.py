"""``alert-anomaly replay --topic ... --workers N`` (or ``--scheduler ADDRESS``): a topic range
replayed piece by piece on a Dask cluster (the 'dask' extra) into ``batch``'s output layout, with
the source and processor of ``replay`` (:mod:`service.topic_split`)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from models.exceptions import ConfigurationError, DataError
from service.commands.args import positive_int
from service.commands.cluster import (
    add_cluster_options,
    check_cluster_options,
    log_settings,
    report,
    run_on_cluster,
)
from service.config import Settings

COMMAND = "alert-anomaly replay --workers/--scheduler"


def add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """The options that replay a topic range on a Dask cluster instead of in this process."""
    group = p.add_argument_group(
        "on a Dask cluster (the 'dask' extra; --topic and --out only)",
        "The range is split by partition, and a large partition by offsets, into pieces "
        "replayed on the workers; --out receives scores/<piece>.parquet, dead-letters/<piece>"
        ".parquet and a marker _done/<piece>.json per piece (batch's layout); --resume skips "
        "the pieces done.",
    )
    add_cluster_options(group, "start a local cluster of N worker processes, one thread each")
    group.add_argument(
        "--piece-messages",
        type=positive_int,
        help="offsets of a piece: a larger partition is split (default 1000000)",
    )


def on_cluster(args: argparse.Namespace) -> bool:
    """Whether the command asks for a cluster (else the options of one are refused)."""
    if args.workers or args.scheduler:
        return True
    if args.piece_messages:
        raise ConfigurationError("--piece-messages applies with --workers or --scheduler")
    return False


def run_cluster_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the topic range of ``settings`` into ``args.out`` on the cluster of ``args``."""
    from service import batch, topic_split
    from service.registry import input_description

    check_cluster_options(args, COMMAND)
    out = args.out
    pieces = topic_split.saved_pieces(out)
    if pieces is not None and not args.resume:
        raise DataError(f"{out} holds an earlier replay: add --resume or remove it")
    model = settings.model.model_dump(mode="json", exclude={"device", "cpu_threads", "inference"})
    batch.claim(out, {"input": input_description(settings), "model": model})
    if pieces is None:
        pieces = topic_split.plan(settings, args.piece_messages or topic_split.PIECE_MESSAGES)
        topic_split.save_pieces(out, pieces)
    finished = batch.done(out)
    todo = [p for p in pieces if p.name not in finished]
    partitions = len({p.partition for p in pieces})
    print(
        f"{len(pieces)} pieces of {partitions} partitions of {settings.input.topics[0]}: "
        f"{len(pieces) - len(todo)} done, {len(todo)} to replay",
        flush=True,
    )
    started = time.monotonic()
    results = _run(args, settings, todo) if todo else []
    report(results, started, out)
    return 0


def _run(args: argparse.Namespace, settings: Settings, todo: list[Any]) -> list[Any]:
    """Replay ``todo`` on the cluster (:func:`service.commands.cluster.run_on_cluster`), the
    settings sent without their Kafka secrets (a local cluster's workers get them in their
    environment)."""
    from service.topic_split import replay_piece, secret_environment, without_secrets

    sent, holes = without_secrets(settings)
    env = {} if args.scheduler else secret_environment(settings, holes)
    logs = log_settings(args)

    def submit(client: Any, piece: Any) -> Any:
        return client.submit(
            replay_piece,
            piece,
            sent,
            holes,
            args.out,
            logs,
            key=f"replay-{piece.name}",
            pure=False,
            retries=0,
        )

    rerun = "rerun with --resume to replay the rest"
    return run_on_cluster(args, COMMAND, todo, submit, "pieces", rerun, env, announce=True)
