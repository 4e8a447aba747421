"""``alert-anomaly replay --topic ... --workers N`` (or ``--scheduler ADDRESS``): a topic range
replayed piece by piece on a Dask cluster (the 'dask' extra) into ``batch``'s output layout, with
the source and processor of ``replay`` (:mod:`service.topic_split`)."""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

from models.exceptions import ConfigurationError, DataError
from models.extras import DASK, require
from service.commands.args import positive_int
from service.config import Settings
from service.exceptions import ClusterError

CONNECT_TIMEOUT_S = 30.0  # how long `--scheduler` waits for the scheduler to answer
HEARTBEAT_S = 10.0  # a line at least this often while pieces run
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
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=positive_int,
        help="start a local cluster of N worker processes, one thread each",
    )
    where.add_argument("--scheduler", help="join the cluster of this scheduler (tcp://HOST:PORT)")
    group.add_argument(
        "--memory-limit",
        default="2GB",
        help="memory limit of each local worker (Dask's: 2GB, 1.5GiB, auto; default 2GB)",
    )
    group.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_S,
        help=f"seconds to wait for --scheduler (default {CONNECT_TIMEOUT_S:g})",
    )
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


def _client(args: argparse.Namespace, env: dict[str, str]) -> Any:
    """A client of the cluster: a local one started here (its workers' environment has
    ``env`` added), or the scheduler's."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # local workers inherit it
    distributed = require("dask.distributed", DASK, COMMAND)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.scheduler:
        try:
            return distributed.Client(
                args.scheduler, timeout=args.connect_timeout, set_as_default=False
            )
        except (OSError, TimeoutError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise ClusterError(
                f"no Dask scheduler answered at {args.scheduler} within "
                f"{args.connect_timeout:g} s ({detail})"
            ) from None
    print(f"starting a local cluster of {args.workers} workers...", flush=True)
    cluster = distributed.LocalCluster(
        n_workers=args.workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=args.memory_limit,
        dashboard_address=None,
        scheduler_port=0,
        env=env,  # the nannies' environment for their worker processes: never sent elsewhere
    )
    return distributed.Client(cluster, set_as_default=False)


def run_cluster_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the topic range of ``settings`` into ``args.out`` on the cluster of ``args``."""
    from service import batch, topic_split
    from service.registry import input_description

    if args.connect_timeout <= 0:
        raise ConfigurationError("--connect-timeout must be positive")
    require("dask.distributed", DASK, COMMAND)
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
    read = sum(r.read for r in results)
    scored = sum(r.scored for r in results)
    dead = sum(r.dead_lettered for r in results)
    peak = max((r.peak_rss_mb for r in results), default=0.0)
    print(
        f"read {read}, scored {scored}, dead-lettered {dead} in "
        f"{time.monotonic() - started:.1f} s (peak worker RSS {peak:.0f} MiB) -> {out}",
        flush=True,
    )
    return 0


def _run(args: argparse.Namespace, settings: Settings, todo: list[Any]) -> list[Any]:
    """Replay ``todo`` on the cluster, a line per piece done (and every HEARTBEAT_S); raise
    ClusterError naming the first piece that failed, once every other is done."""
    from service.topic_split import replay_piece, secret_environment, without_secrets

    distributed = require("dask.distributed", DASK, COMMAND)
    sent, holes = without_secrets(settings)
    client = _client(args, {} if args.scheduler else secret_environment(settings, holes))
    logs = (getattr(args, "log_format", None), getattr(args, "log_level", "info"))
    results: list[Any] = []
    failed: list[tuple[str, BaseException]] = []
    try:
        futures = {
            client.submit(
                replay_piece,
                piece,
                sent,
                holes,
                args.out,
                logs,
                key=f"replay-{piece.name}",
                pure=False,
                retries=0,
            ): piece.name
            for piece in todo
        }
        pending = set(futures)
        while pending:
            try:
                with client.as_current():
                    finished, pending = distributed.wait(
                        pending, timeout=HEARTBEAT_S, return_when="FIRST_COMPLETED"
                    )
            except TimeoutError:
                print(f"  {len(results)} of {len(todo)} pieces done...", flush=True)
                continue
            for future in finished:
                name = futures[future]
                if future.status == "error":
                    failed.append((name, future.exception()))
                    print(f"  {name}: failed", flush=True)
                    continue
                result = future.result()
                results.append(result)
                print(
                    f"  {name}: read {result.read}, scored {result.scored}, dead-lettered "
                    f"{result.dead_lettered} in {result.seconds:.1f} s "
                    f"(worker peak RSS {result.peak_rss_mb:.0f} MiB)",
                    flush=True,
                )
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None and not args.scheduler:
            cluster.close()
    if failed:
        name, exc = failed[0]
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ClusterError(
            f"{len(failed)} of {len(todo)} pieces failed (first: {name}: {detail}); "
            "the others are done: rerun with --resume to replay the rest"
        )
    return results
