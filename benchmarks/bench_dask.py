"""``alert-anomaly batch`` on a local Dask cluster: rows/s and the peak resident memory of each
worker against a dataset larger than a worker's memory limit (issue 30 item 3: a partition is
read --read-rows at a time, so a worker's memory does not grow with the dataset).

The dataset is the sample table tiled (oids made unique) into tables of --table-rows rows in row
groups of --group-rows; it is scored twice, at --rows/4 and at --rows, so that the peak RSS per
worker of the two sizes can be compared (flat = bounded).

    python benchmarks/bench_dask.py [--rows 400000] [--workers 2] [--memory-limit 1GB]
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
    args = parser.parse_args()
    print(machine(), f"({cores()} cores)")
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
