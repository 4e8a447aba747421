"""``alert-anomaly demo``: the whole service on an embedded broker, in one command."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from service.commands.args import examples, positive_int


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        epilog=examples(
            "alert-anomaly demo",
            "alert-anomaly demo --n 500 --top 3",
            "alert-anomaly demo --survey lsst",
            "alert-anomaly demo --reranker rerankers/ana   # verdicts retrain wrote it",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="score the sample alerts on an embedded broker and show the top anomalies",
        description=(
            "Start an embedded Kafka-protocol broker (tansu), publish the committed synthetic "
            "sample as ZTF classifier records (--survey lsst: simulated Rubin alert packets in "
            "Rubin's wire format) plus a few bad messages, run the service until every message "
            "is scored or dead-lettered, print the top anomalies per class and the throughput, "
            "then exit."
        ),
    )
    p.add_argument(
        "--survey",
        choices=("ztf", "lsst"),
        default="ztf",
        help="ztf: ALeRCE classifier records of the committed sample; lsst: Rubin alert packets",
    )
    p.add_argument(
        "--n",
        type=positive_int,
        help="publish only the first N sample alerts (lsst: simulate N packets, default 1000)",
    )
    p.add_argument("--top", type=positive_int, default=5, help="anomalies shown per class")
    p.add_argument(
        "--reranker",
        type=Path,
        help="an expert's re-ranker (`verdicts retrain`, extra rerank; model.reranker): the "
        "scores carry its re-ranked percentile and the top lists are ranked by it",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from service.io.embedded import broker_binary

    # The extras' one-line errors before anything is simulated or started.
    broker_binary()
    if args.survey == "lsst":
        from models import rubin
        from models.estimators import isolation_forest_class

        rubin.latest_version()
        isolation_forest_class()  # lsst/all-iforest scores the packets
    from service.demo import run_demo

    what = "simulating Rubin alert packets, " if args.survey == "lsst" else ""
    print(f"{what}starting an embedded broker and publishing the sample alerts...", flush=True)
    overrides = {} if args.reranker is None else {"model": {"reranker": args.reranker}}
    result = run_demo(args.n, overrides, survey=args.survey)
    reranked = args.reranker is not None
    truth = result.truth
    by_class: dict[str, list[dict[str, object]]] = defaultdict(list)
    for score in result.scores:
        by_class[str(score["top_class"])].append(score)
    print()
    for top in sorted(by_class):
        rank = "reranked_percentile" if reranked else "score"
        rows = sorted(by_class[top], key=lambda s: -float(s[rank]))  # type: ignore[arg-type]
        scorer = rows[0]["scorer"]
        by = f", re-ranked by {rows[0]['reranker_expert']}'s verdicts" if reranked else ""
        print(f"Top {args.top} anomalies among {len(rows)} {top} alerts ({scorer}{by}):")
        header = f"  {'oid':20s} {'true class':15s} {'nearest':15s} {'score':>10s} {'pct':>6s}"
        print(header + (f" {'re-ranked':>9s}" if reranked else ""))
        for s in rows[: args.top]:
            nearest = s["nearest_subclass"] or "-"
            line = (
                f"  {s['oid']!s:20s} {truth.get(str(s['oid']), '?'):15s} {nearest!s:15s} "
                f"{float(s['score']):10.4g} {float(s['percentile']):6.2f}"  # type: ignore[arg-type]
            )
            if reranked:
                line += f" {float(s['reranked_percentile']):9.2f}"  # type: ignore[arg-type]
            print(line)
        print()
    stats = result.stats
    reasons = sorted(
        dict(result.dead_letters[i].headers() or {}).get("alert_anomaly.error", b"?").decode()
        for i in range(len(result.dead_letters))
    )
    print(
        f"scored {stats.scored} alerts, dead-lettered {stats.dead_lettered} "
        f"({', '.join(reasons)}): {stats.throughput():,.0f} messages/s from the first message "
        f"consumed to the last acknowledged ({result.seconds:.1f} s including the consumer-group "
        "join)"
    )
    if result.metrics_url:
        print(f"metrics were served at {result.metrics_url} while the service ran")
    return 0
