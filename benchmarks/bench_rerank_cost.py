"""What re-ranking costs the stream: the time :class:`service.core.reranking.LoadedReranker` takes
to re-rank one micro-batch (the re-ranker's features picked by name from a bundle's, the forest's
scores, the blend), per row, and the time to load a re-ranker (a hot reload's work).

The re-ranker is fitted as ``verdicts retrain`` fits one (coniferest's defaults: 100 trees of 256
samples) on the committed ZTF sample's paper features and made-up percentiles and verdicts (the
cost does not depend on what the verdicts say). Takes a few seconds.

    python benchmarks/bench_rerank_cost.py [--repeats 20] [--verdicts 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from models.features import paper_features
from models.rerank import ANOMALY, REGULAR, fit_reranker
from models.resources import sample_dir
from models.table import read_table
from service.core.reranking import load

BATCHES = (1024, 32)  # batch.max_rows, and the small batches of a quiet stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timings per batch size")
    parser.add_argument("--verdicts", type=int, default=40, help="labelled rows")
    args = parser.parse_args()
    table = read_table(sample_dir() / "objects.parquet")
    names = tuple(n for n in paper_features() if n in table.feature_names)
    X = table.columns(names)
    rng = np.random.default_rng(0)
    pct = rng.uniform(0, 100, len(X))
    known = rng.choice(len(X), args.verdicts, replace=False)
    labels = np.where(np.arange(args.verdicts) % 2 == 0, ANOMALY, REGULAR)
    reranker = fit_reranker(
        "bench", names, X, X[known], labels, reference_percentile=pct, known_percentile=pct[known]
    )
    with tempfile.TemporaryDirectory() as tmp:
        reranker.save(Path(tmp))
        started = time.perf_counter()
        loaded = load(Path(tmp))
        load_s = time.perf_counter() - started
    print(f"re-ranker: {len(X)} reference rows, {len(names)} features, 100 trees")
    print(f"load (a hot reload): {load_s:.3f} s")
    for n in BATCHES:
        rows = np.resize(X, (n, len(names))).astype(np.float32)
        percentile = np.resize(pct, n)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            loaded.columns(names, rows, percentile)
            times.append(time.perf_counter() - started)
        median = float(np.median(times))
        print(f"batch of {n}: {median * 1e3:.2f} ms, {median / n * 1e6:.1f} us per row (median)")


if __name__ == "__main__":
    main()
