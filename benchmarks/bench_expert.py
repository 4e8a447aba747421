"""The expert in the loop, measured as the active-anomaly-detection papers measure it: a simulated
expert reviews the top of each night's list for N nights, and we count the true anomalies found
per K reviews.

The expert is the simulator's truth: objects of the INTERESTING subclasses (rare transients:
superluminous supernovae and novae / dwarf-nova outbursts; both are columns of the evaluation's
leave-one-subclass-out tables, i.e. subclasses the evaluation treats as anomalies in turn) get
"anomaly", every other subclass (the ordinary and the known odd variables the static model ranks
high: delta Scuti, RR Lyrae, Cepheids...) gets "not". Per seed, all 2,600 objects of the other
subclasses of the committed sample and a random few of each interesting subclass (rare: ~2%) are
shuffled and cut into nights; each night the expert reviews the top ``--per-night`` of the
night's list under each ranking:

- static: the shipped models' percentile (``alert-anomaly score`` of the sample);
- loop: the same percentile re-ranked by the expert's re-ranker (models.rerank: AADForest on
  the features and the percentile, blended with the percentile) retrained after every night on
  all verdicts so far and the objects of the nights so far; the first night is the static list;
- loop-forest: the loop with the re-ranker's forest alone deciding (blend 1: the percentile
  only a column of the forest), to show what the blend costs or brings;
- aad: coniferest's AADForest alone on the same features, same feedback and population (the
  first night: an unsupervised forest on that night).

Caveat: the shipped bundles were trained on the whole committed sample, so the static score is
in-sample here: a model that was never told that these subclasses are interesting, not one that
never saw them.

    python benchmarks/bench_expert.py [--seeds 10] [--nights 10] [--per-night 20] [--json out.json]
        [--plot ../docs/results/expert-yield.svg]

``--plot`` draws the yield curves (true anomalies found against reviews, mean and one standard
deviation over seeds, random order for scale) with matplotlib (the ``sim`` extra).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import cores, machine
from numpy.typing import NDArray

from models.features import paper_features
from models.rerank import ANOMALY, REGULAR, fit_reranker
from models.resources import sample_dir
from models.table import read_table

INTERESTING = ("SLSN", "CV/Nova")
METHODS = {
    "static": "static",
    "loop": "the loop",
    "loop-forest": "the loop, forest only (blend 1)",
    "aad": "AADForest alone",
}
KS = (10, 25, 50, 100, 150, 200)


def score_sample(sample: Path) -> dict[str, float]:
    """The shipped models' percentile of every object of ``sample`` (``alert-anomaly score``)."""
    import pyarrow.parquet as pq

    from service.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scores.parquet"
        if main(["--log-level", "warning", "score", str(sample), str(out), "--no-progress"]):
            raise SystemExit("scoring the sample failed")
        rows = pq.read_table(out, columns=["oid", "percentile"]).to_pylist()
    return {str(r["oid"]): float(r["percentile"]) for r in rows}


def run_seed(
    seed: int,
    X: NDArray[np.float64],
    pct: NDArray[np.float64],
    interesting: NDArray[np.bool_],
    names: tuple[str, ...],
    nights: int,
    per_night: int,
    per_subclass: int,
    subclass: NDArray[np.str_],
) -> dict[str, list[int]]:
    """The hits (1: a true anomaly) of each method's reviews, in review order."""
    rng = np.random.default_rng(seed)
    chosen = [np.flatnonzero(~interesting)]
    for name in INTERESTING:
        members = np.flatnonzero(subclass == name)
        chosen.append(rng.choice(members, size=per_subclass, replace=False))
    rows = rng.permutation(np.concatenate(chosen))
    parts = np.array_split(rows, nights)
    hits: dict[str, list[int]] = {m: [] for m in METHODS}
    reviewed: dict[str, list[int]] = {m: [] for m in METHODS if m != "static"}
    for t, night in enumerate(parts):
        past = np.concatenate(parts[:t]) if t else night
        order: dict[str, NDArray[np.intp]] = {"static": night[np.argsort(-pct[night])]}
        for method in reviewed:
            seen = np.asarray(reviewed[method], dtype=np.intp)
            labels = np.where(interesting[seen], ANOMALY, REGULAR)
            if method != "aad" and not seen.size:
                order[method] = order["static"]
                continue
            kwargs: dict[str, Any] = {}
            if method != "aad":
                kwargs = {"reference_percentile": pct[past], "known_percentile": pct[seen]}
            if method == "loop-forest":
                kwargs["blend"] = 1.0
            reranker = fit_reranker(
                f"sim-{seed}", names, X[past], X[seen], labels, seed=seed + 1000 * t, **kwargs
            )
            if method != "aad":
                value = reranker.rerank(X[night], pct[night])
            else:
                value = reranker.expert_quantile(reranker.rows(X[night], None))
            order[method] = night[np.argsort(-value, kind="stable")]
        for method, ranked in order.items():
            top = ranked[:per_night]
            hits[method].extend(int(v) for v in interesting[top])
            if method in reviewed:
                reviewed[method].extend(int(i) for i in top)
    return hits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--per-night", type=int, default=20, help="reviews per night (20)")
    parser.add_argument("--per-subclass", type=int, default=30, help="interesting objects (30)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="the yield curves as an image (.svg, .png)")
    args = parser.parse_args()
    started = time.perf_counter()
    sample = sample_dir() / "objects.parquet"
    table = read_table(sample)
    names = tuple(n for n in paper_features() if n in table.feature_names)
    percentile = score_sample(sample)
    pct = np.asarray([percentile[str(o)] for o in table.oid.tolist()])
    X = table.columns(names)
    interesting = np.isin(table.subclass, INTERESTING)
    scored = time.perf_counter() - started
    total = args.nights * args.per_night
    ks = [k for k in KS if k <= total]
    found: dict[str, list[list[int]]] = {m: [] for m in METHODS}
    curves: dict[str, list[NDArray[np.int64]]] = {m: [] for m in METHODS}
    for seed in range(args.seeds):
        hits = run_seed(
            seed,
            X,
            pct,
            interesting,
            names,
            args.nights,
            args.per_night,
            args.per_subclass,
            table.subclass,
        )
        for method, h in hits.items():
            cumulative = np.cumsum(h)
            found[method].append([int(cumulative[k - 1]) for k in ks])
            curves[method].append(cumulative)
        print(f"seed {seed}: " + ", ".join(f"{m} {sum(h)}" for m, h in hits.items()), flush=True)
    elapsed = time.perf_counter() - started
    n_objects = int((~interesting).sum()) + args.per_subclass * len(INTERESTING)
    print(
        f"\n{args.seeds} seeds, {args.nights} nights of ~{n_objects // args.nights} objects "
        f"({args.per_subclass} of each of {', '.join(INTERESTING)} among {n_objects}), "
        f"{args.per_night} reviews a night; true anomalies found in the first K reviews, "
        "mean ± std (min-max) over seeds"
    )
    print("| method | " + " | ".join(f"K={k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    table_rows: dict[str, list[dict[str, float]]] = {}
    for method, label in METHODS.items():
        values = np.asarray(found[method], dtype=np.float64)
        cells, stats = [], []
        for j in range(len(ks)):
            column = values[:, j]
            mean, std = float(column.mean()), float(column.std())
            lo, hi = int(column.min()), int(column.max())
            cells.append(f"{mean:.1f} ± {std:.1f} ({lo}-{hi})")
            stats.append({"mean": mean, "std": std, "min": lo, "max": hi})
        table_rows[method] = stats
        print(f"| {label} | " + " | ".join(cells) + " |")
    at = ks.index(100) if 100 in ks else len(ks) - 1
    ratio = table_rows["loop"][at]["mean"] / max(table_rows["static"][at]["mean"], 1e-9)
    print(
        f"\nloop / static in the first {ks[at]} reviews: {ratio:.2f}x "
        f"(goal >= 2x: {'met' if ratio >= 2 else 'not met'}); "
        f"{elapsed:.0f} s ({scored:.0f} s scoring the sample) on the {machine()}"
    )
    share = len(INTERESTING) * args.per_subclass / n_objects
    if args.plot:
        plot(args.plot, curves, share, args)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": " ".join(["python", *sys.argv]),
                    "machine": machine(),
                    "cores": cores(),
                    "seconds": elapsed,
                    "interesting": INTERESTING,
                    "ks": ks,
                    "found": found,
                    "labels": METHODS,
                    "summary": table_rows,
                    "curves": {m: np.asarray(c).tolist() for m, c in curves.items()},
                    "loop_over_static_at_100": ratio,
                },
                indent=1,
            )
        )
    return 0


def plot(path: Path, curves: dict[str, list[NDArray[np.int64]]], share: float, args: Any) -> None:
    """True anomalies found against reviews per method: the mean over seeds and a band of one
    standard deviation; random review order (``share`` of the objects are interesting)."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "bench_expert"  # the same curves, the same file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, label in METHODS.items():
        values = np.asarray(curves[method], dtype=np.float64)
        k = np.arange(1, values.shape[1] + 1)
        mean, std = values.mean(axis=0), values.std(axis=0)
        (line,) = ax.plot(k, mean, label=label, linewidth=1.6)
        ax.fill_between(k, mean - std, mean + std, color=line.get_color(), alpha=0.15, lw=0)
    k = np.arange(1, args.nights * args.per_night + 1)
    ax.plot(k, share * k, color="grey", linestyle=":", label="random order")
    for night in range(1, args.nights):
        ax.axvline(night * args.per_night, color="0.9", linewidth=0.6, zorder=0)
    ax.set_xlabel(f"reviews ({args.per_night} a night, {args.nights} nights)")
    ax.set_ylabel("true anomalies found (SLSN, CV/Nova)")
    ax.set_title(f"The expert in the loop: mean and ±1 std over {args.seeds} seeds", fontsize=10)
    ax.set_xlim(0, k[-1])
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
