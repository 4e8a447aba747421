"""Benchmark: simulate N objects (default 10,000) on all cores and print the time per stage and
the light-curve classifier's out-of-fold (held-out) accuracy, top level and subclass.

    python benchmarks/bench_simulate.py [--n 10000] [--seed 7]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import cores, machine

from models.simulate.dataset import SimulationConfig, simulate
from models.taxonomy import ALL_SUBCLASSES, TOP_CLASSES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    jobs = cores()
    t0 = time.perf_counter()
    data = simulate(SimulationConfig(n_objects=args.n, seed=args.seed, jobs=jobs, progress=False))
    total = time.perf_counter() - t0
    table = data.table
    top_acc = float(np.mean(table.predicted_top() == table.top_class))
    sub_acc = float(np.mean(table.predicted_subclass() == table.subclass))
    print(machine())
    print(f"objects: {len(table)}  features: {len(table.feature_names)}")
    print(
        f"time: total {total:.1f} s (simulate+features {data.seconds['simulate']:.1f} s, "
        f"classifier {data.seconds['classify']:.1f} s); target < 180 s for 10,000 on 2 cores"
    )
    print(
        f"held-out (out-of-fold) accuracy: top level {top_acc:.3f} "
        f"(chance {1 / len(TOP_CLASSES):.3f}), subclass {sub_acc:.3f} "
        f"(chance {1 / len(ALL_SUBCLASSES):.3f})"
    )
    for top in TOP_CLASSES:
        sel = table.top_class == top
        print(f"  {top:10s} recall {np.mean(table.predicted_top()[sel] == top):.3f}")


if __name__ == "__main__":
    main()
