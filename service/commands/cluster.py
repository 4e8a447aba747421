"""What ``alert-anomaly batch`` and ``alert-anomaly replay --workers/--scheduler`` share on a Dask
cluster (the 'dask' extra): the cluster options, the client of a local cluster started here or of
an existing scheduler, and the loop that runs a command's parts on it, a line per part done (and
at least every :data:`HEARTBEAT_S`), and the closing line of counts."""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from models.exceptions import ConfigurationError
from models.extras import DASK, require
from service.commands.args import positive_int
from service.exceptions import ClusterError

CONNECT_TIMEOUT_S = 30.0  # how long `--scheduler` waits for the scheduler to answer
HEARTBEAT_S = 10.0  # a line at least this often while parts run


def add_cluster_options(container: argparse._ActionsContainer, workers_help: str) -> None:
    """Add ``--workers N`` (help ``workers_help``) or ``--scheduler ADDRESS``, ``--memory-limit``
    and ``--connect-timeout`` to ``container`` (a parser or an argument group)."""
    where = container.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, help=workers_help)
    where.add_argument("--scheduler", help="join the cluster of this scheduler (tcp://HOST:PORT)")
    container.add_argument(
        "--memory-limit",
        default="2GB",
        help="memory limit of each local worker (Dask's: 2GB, 1.5GiB, auto; default 2GB)",
    )
    container.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_S,
        help=f"seconds to wait for --scheduler (default {CONNECT_TIMEOUT_S:g})",
    )


def check_cluster_options(args: argparse.Namespace, command: str) -> None:
    """Refuse a non-positive ``--connect-timeout``; require the 'dask' extra (for ``command``)."""
    if args.connect_timeout <= 0:
        raise ConfigurationError("--connect-timeout must be positive")
    require("dask.distributed", DASK, command)


def log_settings(args: argparse.Namespace) -> tuple[Any, str]:
    """The command's log format and level, for its workers to log as it does."""
    return (getattr(args, "log_format", None), getattr(args, "log_level", "info"))


def start_client(
    args: argparse.Namespace,
    command: str,
    env: dict[str, str] | None = None,
    announce: bool = False,
) -> Any:
    """A client of the scheduler ``args.scheduler`` (ClusterError when it does not answer within
    ``args.connect_timeout``) or of a local cluster of ``args.workers`` (default 1) processes
    started here, one thread each; its workers' environment has ``env`` added. ``announce``:
    say so before starting it."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # local workers inherit it
    distributed = require("dask.distributed", DASK, command)
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
    if announce:
        print(f"starting a local cluster of {args.workers} workers...", flush=True)
    # env: the nannies' environment for their worker processes, never sent elsewhere
    extra = {} if env is None else {"env": env}
    cluster = distributed.LocalCluster(
        n_workers=args.workers or 1,
        threads_per_worker=1,
        processes=True,
        memory_limit=args.memory_limit,
        dashboard_address=None,
        scheduler_port=0,
        **extra,
    )
    return distributed.Client(cluster, set_as_default=False)


def stop_client(client: Any, args: argparse.Namespace) -> None:
    """Close ``client``, and its cluster when this command started it (not ``--scheduler``'s)."""
    cluster = client.cluster
    client.close()
    if cluster is not None and not args.scheduler:
        cluster.close()


def run_on_cluster(
    args: argparse.Namespace,
    command: str,
    todo: Sequence[Any],
    submit: Callable[[Any, Any], Any],
    noun: str,
    rerun: str,
    env: dict[str, str] | None = None,
    announce: bool = False,
    finish: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Run ``todo`` (parts with a ``name``) on the cluster of ``args`` (:func:`start_client`,
    stopped at the end) and return their results (their counts); ``submit(client, part)`` gives
    a future of a part's result, ``finish(client)`` runs once every part is done. A line per part
    done and at least every HEARTBEAT_S; once every other part is done, ClusterError naming the
    first that failed (``noun``: what the parts are called; ``rerun``: how to run the rest)."""
    client = start_client(args, command, env, announce)
    try:
        results = _wait(client, command, todo, submit, noun, rerun)
        if finish is not None:
            finish(client)
    finally:
        stop_client(client, args)
    return results


def _wait(
    client: Any,
    command: str,
    todo: Sequence[Any],
    submit: Callable[[Any, Any], Any],
    noun: str,
    rerun: str,
) -> list[Any]:
    distributed = require("dask.distributed", DASK, command)
    futures = {submit(client, part): part.name for part in todo}
    results: list[Any] = []
    failed: list[tuple[str, BaseException]] = []
    pending = set(futures)
    while pending:
        try:
            with client.as_current():
                finished, pending = distributed.wait(
                    pending, timeout=HEARTBEAT_S, return_when="FIRST_COMPLETED"
                )
        except TimeoutError:
            print(f"  {len(results)} of {len(todo)} {noun} done...", flush=True)
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
    if failed:
        name, exc = failed[0]
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ClusterError(
            f"{len(failed)} of {len(todo)} {noun} failed (first: {name}: {detail}); "
            f"the others are done: {rerun}"
        )
    return results


def report(results: Sequence[Any], started: float, out: Any, note: str = "") -> None:
    """The closing line: the parts' counts summed, the time since ``started`` (monotonic), the
    largest worker peak RSS, where the output is (and ``note`` after it)."""
    read = sum(r.read for r in results)
    scored = sum(r.scored for r in results)
    dead = sum(r.dead_lettered for r in results)
    peak = max((r.peak_rss_mb for r in results), default=0.0)
    print(
        f"read {read}, scored {scored}, dead-lettered {dead} in "
        f"{time.monotonic() - started:.1f} s (peak worker RSS {peak:.0f} MiB) -> {out}{note}",
        flush=True,
    )
