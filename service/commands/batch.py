"""``alert-anomaly batch``: a dataset of Parquet tables scored partition by partition on a Dask
cluster (the 'dask' extra), a local one (``--workers N``) or an existing one (``--scheduler``),
with the processor of ``score`` (:mod:`service.batch`)."""

from __future__ import annotations

import argparse
import logging
import os
import time
from typing import Any

from models.exceptions import ConfigurationError
from models.extras import DASK, require
from service.commands.args import add_setting_flags, examples, positive_int, settings_of
from service.commands.replay import MODEL_FLAGS
from service.exceptions import ClusterError
from service.io.storage import location

CONNECT_TIMEOUT_S = 30.0  # how long `--scheduler` waits for the scheduler to answer
HEARTBEAT_S = 10.0  # a line at least this often while partitions run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "batch",
        epilog=examples(
            "alert-anomaly batch objects/ --out scores/ --workers 2",
            "alert-anomaly batch s3://archive/ztf/ --out s3://scores/ztf/ "
            "--scheduler tcp://scheduler:8786",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="score a dataset of Parquet tables on a Dask cluster (the 'dask' extra)",
        description=(
            "Score every Parquet table under INPUT (a directory, a table, or an s3:// prefix; "
            "the tables `score` reads) on a Dask cluster: each input partition (row groups of "
            "a table, up to --partition-rows rows) is scored on a worker by the processor of "
            "`score`, reading --read-rows rows at a time. OUT receives scores/<partition>"
            ".parquet, dead-letters/<partition>.parquet and a marker _done/<partition>.json per "
            "partition; a rerun skips the partitions done. Exit status 2 when the scheduler "
            "does not answer or a partition failed (the others are kept). A HATS catalog "
            "(the 'hats' extra) is read with lsdb, a partition per HEALPix pixel, and its "
            "scores also written as the HATS catalog OUT/hats."
        ),
    )
    p.add_argument(
        "input", type=location, help="directory, table, s3:// prefix of tables, or a HATS catalog"
    )
    p.add_argument("--out", type=location, required=True, help="output directory or s3:// prefix")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=positive_int,
        help="start a local cluster of N worker processes, one thread each (default 1)",
    )
    where.add_argument("--scheduler", help="join the cluster of this scheduler (tcp://HOST:PORT)")
    p.add_argument(
        "--memory-limit",
        default="2GB",
        help="memory limit of each local worker (Dask's: 2GB, 1.5GiB, auto; default 2GB)",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=CONNECT_TIMEOUT_S,
        help=f"seconds to wait for --scheduler (default {CONNECT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--partition-rows",
        type=positive_int,
        help="rows of an input partition, at row-group boundaries (default 1000000)",
    )
    p.add_argument(
        "--read-rows",
        type=positive_int,
        help="rows a worker reads from a table at a time (default 10000)",
    )
    add_setting_flags(p, *MODEL_FLAGS)
    p.set_defaults(handler=run_batch)


def _client(args: argparse.Namespace) -> Any:
    """A client of the cluster: a local one started here, or the scheduler's."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # local workers inherit it
    distributed = require("dask.distributed", DASK, "alert-anomaly batch")
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
    cluster = distributed.LocalCluster(
        n_workers=args.workers or 1,
        threads_per_worker=1,
        processes=True,
        memory_limit=args.memory_limit,
        dashboard_address=None,
        scheduler_port=0,
    )
    return distributed.Client(cluster, set_as_default=False)


def run_batch(args: argparse.Namespace) -> int:
    from service import batch

    if args.connect_timeout <= 0:
        raise ConfigurationError("--connect-timeout must be positive")
    require("dask.distributed", DASK, "alert-anomaly batch")
    # inference inline on the workers: a Dask worker is a daemon process, it starts none
    settings = settings_of(args, output={"kind": "memory"}, model={"inference": "inline"})
    if _is_hats(args.input):
        return _run_hats(args, settings)
    parts = batch.plan(args.input, args.partition_rows or batch.PARTITION_ROWS)
    model = settings.model.model_dump(mode="json", exclude={"device", "cpu_threads", "inference"})
    batch.claim(args.out, {"input": str(args.input), "model": model})
    finished = batch.done(args.out)
    todo = [p for p in parts if p.name not in finished]
    print(
        f"{len(parts)} partitions ({sum(p.rows for p in parts)} rows) in {args.input}: "
        f"{len(parts) - len(todo)} done, {len(todo)} to score",
        flush=True,
    )
    started = time.monotonic()
    results = _run(args, settings, todo, batch.READ_ROWS) if todo else []
    read = sum(r.read for r in results)
    scored = sum(r.scored for r in results)
    dead = sum(r.dead_lettered for r in results)
    peak = max((r.peak_rss_mb for r in results), default=0.0)
    print(
        f"read {read}, scored {scored}, dead-lettered {dead} in "
        f"{time.monotonic() - started:.1f} s (peak worker RSS {peak:.0f} MiB) -> {args.out}",
        flush=True,
    )
    return 0


def _is_hats(root: Any) -> bool:
    from service.hats import is_catalog

    return is_catalog(root)


def _run_hats(args: argparse.Namespace, settings: Any) -> int:
    from service.hats import run

    return run(args, settings, _run)


def _run(
    args: argparse.Namespace,
    settings: Any,
    todo: list[Any],
    read_rows: int,
    submit: Any = None,
    finish: Any = None,
) -> list[Any]:
    """Score ``todo`` on the cluster, a line per partition done (and every HEARTBEAT_S);
    raise ClusterError naming the first partition that failed, once every other is done.
    ``submit(client, part)``: a future of the part's result (default: ``score_partition``);
    ``finish(client)``: run on the cluster once every part is done."""
    from service.batch import score_partition

    distributed = require("dask.distributed", DASK, "alert-anomaly batch")
    client = _client(args)
    results: list[Any] = []
    failed: list[tuple[str, BaseException]] = []
    try:
        if submit is not None:
            futures = {submit(client, part): part.name for part in todo}
        else:
            futures = {
                client.submit(
                    score_partition,
                    part,
                    settings,
                    args.out,
                    args.read_rows or read_rows,
                    (getattr(args, "log_format", None), getattr(args, "log_level", "info")),
                    key=f"score-{part.name}",
                    pure=False,
                    retries=0,
                ): part.name
                for part in todo
            }
        pending = set(futures)
        while pending:
            try:
                with client.as_current():
                    finished, pending = distributed.wait(
                        pending, timeout=HEARTBEAT_S, return_when="FIRST_COMPLETED"
                    )
            except TimeoutError:
                print(f"  {len(results)} of {len(todo)} partitions done...", flush=True)
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
        if finish is not None and not failed:
            finish(client)
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None and not args.scheduler:
            cluster.close()
    if failed:
        name, exc = failed[0]
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ClusterError(
            f"{len(failed)} of {len(todo)} partitions failed (first: {name}: {detail}); "
            "the others are done: rerun to score the rest"
        )
    return results
