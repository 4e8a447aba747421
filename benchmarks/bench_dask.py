"""``alert-anomaly batch`` on a local Dask cluster: rows/s and the peak resident memory of each
worker against a dataset larger than a worker's memory limit (issue 30 item 3: a partition is
read --read-rows at a time, so a worker's memory does not grow with the dataset).

The dataset is the sample table tiled (oids made unique) into tables of --table-rows rows in row
groups of --group-rows; it is scored twice, at --rows/4 and at --rows, so that the peak RSS per
worker of the two sizes can be compared (flat = bounded).

    python benchmarks/bench_dask.py [--rows 400000] [--workers 2] [--memory-limit 1GB]

``--scaling`` (issue 30 item 6) instead: one table of --rows rows scored by ``score`` in one
process, then by ``batch`` with 1 and 2 workers (4 partitions), and with 1 worker in 40
partitions (the per-partition overhead); rows/s, the time to the first partition's result, and a
sizing line for ZTF's ~10^8 objects.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from common import cores, machine

from models.resources import sample_dir


def make_dataset(root: Path, rows: int, table_rows: int, group_rows: int, blob: int) -> int:
    """Tables of the tiled sample under ``root``, with a ``cutout`` column of ``blob`` random
    bytes a row (0: none); returns their decoded (Arrow) size in bytes."""
    sample = pq.read_table(sample_dir() / "objects.parquet")
    root.mkdir(parents=True)
    written, size, index = 0, 0, 0
    while written < rows:
        n = min(table_rows, rows - written)
        copies = []
        for k in range(-(-n // sample.num_rows)):
            oid = pc.binary_join_element_wise(
                sample.column("oid"), pa.scalar(f"{index}.{k}"), pa.scalar("-")
            )
            copies.append(sample.set_column(0, "oid", oid))
        table = pa.concat_tables(copies).slice(0, n).combine_chunks()
        if blob:
            noise = os.urandom(blob * 64)
            stamps = [noise[(i % 64) * blob :][:blob] + i.to_bytes(8) for i in range(n)]
            table = table.append_column("cutout", pa.array(stamps, pa.binary()))
        pq.write_table(table, root / f"t{index:03d}.parquet", row_group_size=group_rows)
        size += table.nbytes
        written, index = written + n, index + 1
    return size


def run(data: Path, out: Path, args: argparse.Namespace) -> tuple[float, list[float], str]:
    """Seconds, the peak RSS (MB) of each partition's worker, and the command's summary line."""
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "--log-level",
        "warning",
        "batch",
        str(data),
        "--out",
        str(out),
        "--workers",
        str(args.workers),
        "--memory-limit",
        args.memory_limit,
        "--read-rows",
        str(args.read_rows),
        "--partition-rows",
        str(args.partition_rows),
    ]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if result.returncode:
        raise SystemExit(f"batch failed: {result.stderr.strip().splitlines()[-1]}")
    peaks = [float(m) for m in re.findall(r"worker peak RSS (\d+) MiB", result.stdout)]
    return seconds, peaks, result.stdout.strip().splitlines()[-1]


def timed(command: list[str]) -> tuple[float, float | None]:
    """Wall seconds of a CLI command and when its first partition line came (None: none)."""
    started = time.monotonic()
    first = None
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as p:
        assert p.stdout is not None
        for line in p.stdout:
            if first is None and "worker peak RSS" in line and line.startswith("  "):
                first = time.monotonic() - started
    if p.returncode:
        raise SystemExit(f"{command[3:5]} failed (exit {p.returncode})")
    return time.monotonic() - started, first


def scaling(args: argparse.Namespace, tmp: Path) -> None:
    """Item 6: score in one process against batch on 1 and 2 workers (see the docstring)."""
    data = tmp / "in"
    make_dataset(data, args.rows, args.rows, 10_000, 0)
    table = next(data.iterdir())
    cli = [sys.executable, "-m", "service.cli", "--log-level", "warning"]
    rows = args.rows
    score_s, _ = timed([*cli, "score", str(table), str(tmp / "score.parquet"), "--no-progress"])
    print(f"score, one process:        {score_s:6.1f} s, {rows / score_s:7,.0f} rows/s")
    runs = {}
    for workers, parts in ((1, 4), (2, 4), (1, 40)):
        command = [*cli, "batch", str(data), "--out", str(tmp / f"out-{workers}-{parts}")]
        command += ["--workers", str(workers), "--partition-rows", str(rows // parts)]
        seconds, first = timed(command)
        runs[workers, parts] = seconds
        print(
            f"batch, {workers} worker(s), {parts:2d} partitions: {seconds:6.1f} s, "
            f"{rows / seconds:7,.0f} rows/s, first result after {first or float('nan'):.1f} s "
            "(all with the cluster's start)"
        )
    overhead = (runs[1, 40] - runs[1, 4]) / 36
    per_core = rows / runs[2, 4] / 2
    print(f"per-partition overhead: {overhead:.2f} s (1 worker, 40 partitions against 4)")
    print(
        f"sizing: {per_core:,.0f} objects/s per core (2 workers here); ZTF's ~1e8 objects: "
        f"{1e8 / per_core / 3600:,.1f} core-hours, {1e8 / per_core / 3600 / 64:,.1f} h on 64 "
        "workers (1 core each, CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=400_000, help="rows of the larger dataset")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="1GB", help="each worker's (Dask's) limit")
    parser.add_argument("--read-rows", type=int, default=10_000)
    parser.add_argument("--partition-rows", type=int, default=100_000)
    parser.add_argument("--table-rows", type=int, default=200_000)
    parser.add_argument("--group-rows", type=int, default=5_000)
    parser.add_argument(
        "--blob-bytes",
        type=int,
        default=0,
        help="a binary column (cutout) of this many bytes a row, read and ignored as the image "
        "stamps of real alerts are (default 0: the sample's columns only)",
    )
    parser.add_argument("--scaling", action="store_true", help="the scaling runs instead")
    args = parser.parse_args()
    print(machine(), f"({cores()} cores)")
    if args.scaling:
        with tempfile.TemporaryDirectory() as tmp_name:
            scaling(args, Path(tmp_name))
        return
    print(
        f"{args.workers} workers, 1 thread each, memory limit {args.memory_limit} each; "
        f"--read-rows {args.read_rows}, --partition-rows {args.partition_rows}, "
        f"row groups of {args.group_rows}, {args.blob_bytes} bytes of cutout a row"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for rows in (args.rows // 4, args.rows):
            data = tmp / f"in-{rows}"
            size = make_dataset(data, rows, args.table_rows, args.group_rows, args.blob_bytes)
            disk = sum(p.stat().st_size for p in data.iterdir())
            seconds, peaks, line = run(data, tmp / f"out-{rows}", args)
            print(
                f"{rows:>9,d} rows ({size / 1e6:,.0f} MB as Arrow columns, {disk / 1e6:,.0f} MB "
                f"Parquet, {len(peaks)} partitions): {seconds:6.1f} s, {rows / seconds:,.0f} "
                f"rows/s (with the cluster's start), peak worker RSS {max(peaks):.0f} MiB"
            )
            print(f"    {line}")


if __name__ == "__main__":
    main()
