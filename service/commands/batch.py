"""``alert-anomaly batch``: a dataset of Parquet tables scored partition by partition on a Dask
cluster (the 'dask' extra), a local one (``--workers N``) or an existing one (``--scheduler``),
with the processor of ``score`` (:mod:`service.batch`)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from service.commands.args import add_setting_flags, examples, positive_int, settings_of
from service.commands.cluster import (
    add_cluster_options,
    check_cluster_options,
    log_settings,
    report,
    run_on_cluster,
)
from service.commands.replay import MODEL_FLAGS
from service.io.storage import location

COMMAND = "alert-anomaly batch"


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
    add_cluster_options(
        p, "start a local cluster of N worker processes, one thread each (default 1)"
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


def run_batch(args: argparse.Namespace) -> int:
    from service import batch

    check_cluster_options(args, COMMAND)
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
    read_rows = args.read_rows or batch.READ_ROWS
    logs = log_settings(args)

    def submit(client: Any, part: batch.InputPartition) -> Any:
        return client.submit(
            batch.score_partition,
            part,
            settings,
            args.out,
            read_rows,
            logs,
            key=f"score-{part.name}",
            pure=False,
            retries=0,
        )

    results = _run(args, todo, submit) if todo else []
    report(results, started, args.out)
    return 0


def _is_hats(root: Any) -> bool:
    from service.hats import is_catalog

    return is_catalog(root)


def _run_hats(args: argparse.Namespace, settings: Any) -> int:
    from service.hats import run

    return run(args, settings, partial(_run, args))


def _run(
    args: argparse.Namespace,
    todo: list[Any],
    submit: Callable[[Any, Any], Any],
    finish: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Score ``todo`` on the cluster of ``args`` (:func:`service.commands.cluster
    .run_on_cluster`: ``submit(client, part)`` a future of the part's result, ``finish(client)``
    once every part is done)."""
    return run_on_cluster(
        args, COMMAND, todo, submit, "partitions", "rerun to score the rest", finish=finish
    )
