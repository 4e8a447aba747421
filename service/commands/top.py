"""``alert-anomaly top``: the N most anomalous objects per predicted subclass, and the Rubin
anomaly-detection tutorial's report (score histogram, 5 x 4 light-curve grid of the top 20
outliers, the top outlier's summary)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.commands.args import add_setting_flags, examples, positive_int, settings_of

if TYPE_CHECKING:
    from service.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "top",
        epilog=examples(
            "alert-anomaly top --data models/data/ztf-sim-sample/objects.parquet --n 5",
            "alert-anomaly top --survey lsst --data models/data/lsst-sim-sample/objects.parquet "
            "--scorer iforest --lightcurves lc.parquet --report report/iforest",
            "alert-anomaly top --survey lsst --scores night.parquet --lightcurves alerts.avro "
            "--report report/",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="list the most anomalous objects per predicted subclass",
        description=(
            "Score a feature table with the service's own engine and models (routing by the "
            "most probable top-level class, the scorer of each class from model.scorers, on "
            "model.device) and list, per predicted subclass, the N objects with the highest "
            "anomaly percentile (raw score breaks ties) and their most extreme features "
            "(robust z-score within the predicted subclass). --scorer scores the table with the "
            "survey's unrouted model (<bundles>/<survey>/all-<scorer>, every object); --scores "
            "takes the scores of `score` or `replay --out` instead (without --data: the N "
            "highest per routed class). --report DIR writes the Rubin "
            "tutorial's report: histogram.png (the scores, log counts), top20.png (the 20 top "
            "outliers' difference-flux light curves per band, Rubin's band colours; needs "
            "--lightcurves) and prints the top outlier's id, position and r-band summaries."
        ),
    )
    p.add_argument("--data", type=Path, help="feature table (Parquet or CSV)")
    p.add_argument(
        "--scorer",
        help="score with the unrouted model of this kind (e.g. iforest, distclassipy, ae)",
    )
    p.add_argument(
        "--scores", type=Path, help="scores of `score` (Parquet or CSV) or `replay --out`"
    )
    p.add_argument("--report", type=Path, help="write the tutorial's report PNGs here")
    p.add_argument("--n", type=positive_int, default=10, help="objects per subclass (default 10)")
    add_setting_flags(p, "--survey", "--bundles", "--device", "--batch-rows")
    p.add_argument("--plot", type=Path, help="write light-curve PNGs here (needs --lightcurves)")
    p.add_argument(
        "--lightcurves",
        type=Path,
        help="light curves (alert-anomaly simulate --lightcurves), or for LSST an Avro file of "
        "Rubin alert packets",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from models.evaluation.top import plot_lightcurves, rank_anomalies
    from models.exceptions import ConfigurationError
    from models.table import read_table
    from service.commands.offline import NothingScoredError, conclude
    from service.io.sinks.files import CollectingSink
    from service.pipeline import Pipeline

    if args.plot and not args.lightcurves:
        raise ConfigurationError(
            "--plot needs --lightcurves (alert-anomaly simulate --lightcurves)"
        )
    if args.report and not args.lightcurves:
        raise ConfigurationError("--report needs --lightcurves (light curves or alert packets)")
    if args.plot or args.report:  # the plots' extra named before anything is scored
        from models.extras import pyplot

        pyplot("plotting (--plot, --report)")
    if not args.data and not args.scores:
        raise ConfigurationError("give --data (a feature table) or --scores (scored alerts)")
    if args.scores and args.scorer:
        raise ConfigurationError("--scores are scores already: drop --scorer")
    if args.scores or args.scorer:
        return _run_report(args, settings_of(args))
    settings = settings_of(
        args, input={"kind": "files", "paths": [args.data]}, output={"kind": "memory"}
    )
    pipeline = Pipeline(settings)
    sink = pipeline.make_sink()
    assert isinstance(sink, CollectingSink)
    summary = pipeline.replay(sink=sink, progress=None if args.no_progress else "top")
    if not summary.read:
        raise NothingScoredError(f"{args.data} holds no alerts: nothing to list")
    table = read_table(args.data)
    percentile = np.full(len(table), np.nan)
    score = np.full(len(table), np.nan)
    routed = np.full(len(table), "", dtype=object)
    for record in sink.records:
        i = record["source_offset"]
        percentile[i], score[i], routed[i] = (
            record["percentile"],
            record["score"],
            record["top_class"],
        )
    ranked = rank_anomalies(table, routed.astype(str), percentile, score, args.n)
    header = (
        f"  {'oid':16s} {'true class':15s} {'model':18s} {'pct':>7s} {'score':>10s}  "
        "most extreme features (value, robust z)"
    )
    for subclass, entries in ranked.items():
        print(f"predicted {subclass}: top {len(entries)}")
        print(header)
        for e in entries:
            extremes = ", ".join(
                f"{name}={value:.3g} (z {z:+.1f})" for name, value, z in e.extremes
            )
            model = f"{e.routed_class}/{settings.model.scorers[e.routed_class]}"
            print(
                f"  {e.oid:16s} {e.true_subclass:15s} {model:18s} {e.percentile:7.2f} "
                f"{e.score:10.4g}  {extremes}"
            )
    listed = f"{sum(len(v) for v in ranked.values())} listed"
    conclude(summary, listed, settings, [args.data], "each with --log-level debug")
    if args.plot:
        written = plot_lightcurves(ranked, args.lightcurves, args.plot)
        print(f"{len(written)} light-curve plots in {args.plot}")
    return 0


def _run_report(args: argparse.Namespace, settings: Settings) -> int:
    """Scores from a file or from the unrouted model, the per-subclass listing when a table is
    given, and the tutorial's report."""
    import numpy as np

    from models.evaluation.top import rank_anomalies
    from models.exceptions import DataError
    from models.table import read_table

    table = read_table(args.data) if args.data else None
    survey = settings.model.survey
    if args.scores:
        oid, score, percentile, routed, what = _read_scores(args.scores)
    else:
        assert table is not None
        from models.bundle import load_bundle
        from models.resources import bundle_dirname
        from models.scoring import Scorer
        from models.taxonomy import UNROUTED

        path = settings.model.bundles_dir / bundle_dirname(survey, UNROUTED, args.scorer)
        bundle = load_bundle(path)
        missing = [n for n in bundle.feature_names if n not in table.feature_names]
        if missing:
            from service.commands.offline import survey_hint

            hint = survey_hint(settings, [args.data])
            raise DataError(
                f"{args.data} lacks {len(missing)} of {bundle.name}'s features"
                + (f"; {hint}" if hint else "")
            )
        scored = Scorer(bundle, settings.model.device).score(
            table.columns(bundle.feature_names).astype(np.float32)
        )
        oid = table.oid.astype(str)
        score = scored.raw.astype(np.float64)
        percentile = scored.percentile.astype(np.float64)
        routed = np.full(len(table), UNROUTED)
        what = f"{bundle.name} ({bundle.manifest.scorer})"
    if not oid.size:
        raise DataError(f"{args.scores or args.data} holds no scores")
    if table is None:
        _list_scores(oid, score, percentile, routed, args.n)
    else:
        index = {o: i for i, o in enumerate(table.oid.astype(str).tolist())}
        rows = np.array([index.get(o, -1) for o in oid.tolist()])
        if (rows < 0).any():
            raise DataError(f"{int((rows < 0).sum())} scored objects are not in {args.data}")
        full_score = np.full(len(table), np.nan)
        full_pct = np.full(len(table), np.nan)
        full_routed = np.full(len(table), "", dtype=object)
        full_score[rows], full_pct[rows], full_routed[rows] = score, percentile, routed
        ranked = rank_anomalies(table, full_routed.astype(str), full_pct, full_score, args.n)
        for subclass, entries in ranked.items():
            print(f"predicted {subclass}: top {len(entries)}")
            for e in entries:
                extremes = ", ".join(f"{n}={v:.3g} (z {z:+.1f})" for n, v, z in e.extremes)
                print(
                    f"  {e.oid:20s} {e.true_subclass:15s} {e.percentile:7.2f} {e.score:10.4g}  "
                    f"{extremes}"
                )
    print(f"{oid.size} objects scored by {what}")
    if args.report:
        _write_report(args, table, oid, score, percentile, what)
    return 0


def _list_scores(oid: Any, score: Any, percentile: Any, routed: Any, n: int) -> None:
    """Without a feature table: per routed class, its ``n`` most anomalous objects (percentile,
    then raw score)."""
    import numpy as np

    for top in sorted(set(routed.tolist())):
        members = np.flatnonzero((routed == top) & np.isfinite(percentile))
        order = members[np.lexsort((-score[members], -percentile[members]))][:n]
        print(f"routed to {top}: top {len(order)}")
        print(f"  {'oid':20s} {'pct':>7s} {'score':>10s}")
        for i in order.tolist():
            print(f"  {oid[i]:20s} {percentile[i]:7.2f} {score[i]:10.4g}")


def _read_scores(path: Path) -> tuple[Any, Any, Any, Any, str]:
    """oid, score, percentile, routed class and a description of a scores file or dataset."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    from models.exceptions import DataError

    try:
        csv = path.suffix.lower() == ".csv"
        arrow = pa_csv.read_csv(path) if csv else pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read scores {path}: {exc}") from exc
    need = ("oid", "score", "percentile")
    if any(n not in arrow.column_names for n in need):
        raise DataError(f"{path} is not a scores file (needs columns {', '.join(need)})")

    def column(name: str) -> Any:
        return np.asarray(arrow.column(name).to_pylist())

    routed = column("top_class") if "top_class" in arrow.column_names else column("oid")
    scorers = sorted(set(column("scorer").tolist())) if "scorer" in arrow.column_names else []
    what = f"{path} ({', '.join(map(str, scorers)) or 'scores'})"
    return (
        column("oid").astype(str),
        column("score").astype(np.float64),
        column("percentile").astype(np.float64),
        routed.astype(str),
        what,
    )


def _write_report(
    args: argparse.Namespace, table: Any, oid: Any, score: Any, percentile: Any, what: str
) -> None:
    import numpy as np

    from models.evaluation.top import (
        plot_outlier_grid,
        plot_score_histogram,
        read_report_lightcurves,
        top_outlier_lines,
        top_outliers,
    )

    curves, positions = read_report_lightcurves(args.lightcurves)
    top = top_outliers(oid, score, 20)
    ids = [str(oid[i]) for i in top]
    truth: dict[str, str] = {}
    if table is not None:
        truth = dict(zip(table.oid.astype(str).tolist(), table.subclass.tolist(), strict=True))
    titles = [
        f"DiaObject ID: {o}\n{truth.get(o, '')} score {score[i]:.4g} (p{percentile[i]:.1f})"
        for o, i in zip(ids, top, strict=True)
    ]
    histogram = plot_score_histogram(
        score, args.report / "histogram.png", f"Histogram of anomaly scores: {what}"
    )
    grid = plot_outlier_grid(
        ids, titles, curves, args.report / "top20.png", f"The 20 top outliers: {what}"
    )
    if ids:
        first = ids[0]
        features: dict[str, float] = {}
        position = positions.get(first)
        if table is not None:
            row = int(np.flatnonzero(table.oid.astype(str) == first)[0])
            features = dict(zip(table.feature_names, table.features[row].tolist(), strict=True))
            if position is None and "ra" in table.truth:
                position = (float(table.truth["ra"][row]), float(table.truth["dec"][row]))
        print("\n".join(top_outlier_lines(first, position, features)))
    print(f"report: {histogram}, {grid}")
