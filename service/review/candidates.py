"""What the review page shows: the top candidates per routed class of a scores table (the
Parquet or CSV of ``score`` / ``replay --out``), their light curves when a light-curve file is
given (drawn as inline SVG by the page's template: :class:`Plot` holds the geometry), and the
links to the brokers' pages of each object."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from models.exceptions import DataError

NEEDED: Final = ("oid", "score", "percentile")
# Band colours: ZTF's g and r as the project's plots draw them; Rubin's ugrizy as lsst.utils'
# multiband colours for light backgrounds (models.evaluation.top.RUBIN_BAND_COLORS).
ZTF_BAND_COLORS: Final = {"g": "#2ca02c", "r": "#d62728", "i": "#8c564b"}
ZTF_FID_BANDS: Final = {1: "g", 2: "r", 3: "i"}
# The brokers' object pages (formats read from their public pages and clients):
# ALeRCE's explorer (ZTF at alerce.online, LSST at lsst.alerce.online with ?survey=lsst) and
# Fink's science portals (ztf.fink-portal.org, lsst.fink-portal.org), by object id.
LINKS: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "ztf": (
        ("ALeRCE", "https://alerce.online/object/{oid}"),
        ("Fink", "https://ztf.fink-portal.org/{oid}"),
    ),
    "lsst": (
        ("ALeRCE", "https://lsst.alerce.online/object/{oid}?survey=lsst"),
        ("Fink", "https://lsst.fink-portal.org/{oid}"),
    ),
}


@dataclass(frozen=True)
class Series:
    """The points of one band, in plot coordinates."""

    band: str
    color: str
    points: tuple[tuple[float, float, float], ...]  # x, y, half error bar (pixels)


@dataclass(frozen=True)
class Plot:
    """A light curve laid out for an SVG of ``width`` x ``height`` pixels."""

    width: int
    height: int
    series: tuple[Series, ...]
    x_label: str
    y_label: str
    x_range: tuple[float, float]
    y_range: tuple[float, float]


@dataclass(frozen=True)
class Candidate:
    """One scored object, as the page lists it."""

    rank: int
    oid: str
    survey: str
    top_class: str
    scorer: str
    score: float
    percentile: float
    nearest_subclass: str | None
    model_version: str | None
    model_checksum: str | None
    links: tuple[tuple[str, str], ...] = field(default=())
    reranked: float | None = None  # the expert re-ranker's percentile (anomaly-score 1.3)
    reranker: str | None = None  # whose re-ranker made it
    # the features that drive the score, largest contribution first (anomaly-score 1.2; empty
    # below model.explain_min_percentile and for scorers without an explanation)
    explanation: tuple[tuple[str, float], ...] = ()


def read_scores(path: Path) -> list[dict[str, Any]]:
    """The rows of a scores file (Parquet file or dataset folder, or CSV)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"no scores at {path} (write them with alert-anomaly score or replay)")
    try:
        csv = path.suffix.lower() == ".csv"
        table = pa_csv.read_csv(path) if csv else pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read scores {path}: {' '.join(str(exc).split())}") from None
    missing = [n for n in NEEDED if n not in table.column_names]
    if missing:
        raise DataError(f"{path} is not a scores table (lacks {', '.join(missing)})")
    rows: list[dict[str, Any]] = table.to_pylist()
    if not rows:
        raise DataError(f"{path} holds no scores")
    return rows


def _reranked(row: dict[str, Any]) -> float | None:
    """The row's re-ranked percentile (scores written with ``model.reranker``), if any."""
    value = row.get("reranked_percentile")
    return float(value) if value is not None and math.isfinite(value) else None


def _explanation(row: dict[str, Any]) -> tuple[tuple[str, float], ...]:
    """The row's explanation: a list of {feature, contribution} in Parquet, that list as JSON
    text in CSV (which has no nested types); none in scores written before anomaly-score 1.2."""
    value = row.get("explanation")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            text = value[:80]
            raise DataError(f"the explanation of {row['oid']} is not JSON: {text!r}") from None
    if not value:
        return ()
    try:
        return tuple((str(item["feature"]), float(item["contribution"])) for item in value)
    except (TypeError, KeyError, ValueError):
        raise DataError(
            f"the explanation of {row['oid']} is not a list of feature and contribution: "
            f"{str(value)[:80]!r}"
        ) from None


def _order(row: dict[str, Any]) -> tuple[float, float, float]:
    """Larger first: the re-ranked percentile (rows without one after those with one), then
    the percentile, then the raw score."""
    reranked = _reranked(row)
    return (-1.0 if reranked is None else reranked, row["percentile"], row["score"])


def rank(rows: Sequence[dict[str, Any]], survey: str = "ztf") -> dict[str, list[Candidate]]:
    """Per routed class (``top_class``; one class "all" without it), the candidates by
    decreasing re-ranked percentile when the scores have one (an expert's re-ranker in the
    stream), then percentile, then raw score; an object scored more than once keeps its
    highest."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        pct, score = row.get("percentile"), row.get("score")
        if pct is None or score is None or not math.isfinite(pct) or not math.isfinite(score):
            continue
        key = (str(row.get("survey") or survey), str(row["oid"]))
        kept = best.get(key)
        if kept is None or _order(row) > _order(kept):
            best[key] = row
    by_class: dict[str, list[dict[str, Any]]] = {}
    for row in best.values():
        by_class.setdefault(str(row.get("top_class") or "all"), []).append(row)
    ranked: dict[str, list[Candidate]] = {}
    for cls in sorted(by_class):
        ordered = sorted(by_class[cls], key=lambda r: (tuple(-v for v in _order(r)), r["oid"]))
        ranked[cls] = [_candidate(i, row, survey) for i, row in enumerate(ordered, start=1)]
    return ranked


def _candidate(rank: int, row: dict[str, Any], survey: str) -> Candidate:
    row_survey = str(row.get("survey") or survey)
    oid = str(row["oid"])
    links = tuple((name, url.format(oid=oid)) for name, url in LINKS.get(row_survey, ()))
    return Candidate(
        rank=rank,
        oid=oid,
        survey=row_survey,
        top_class=str(row.get("top_class") or "all"),
        scorer=str(row.get("scorer") or ""),
        score=float(row["score"]),
        percentile=float(row["percentile"]),
        nearest_subclass=row.get("nearest_subclass") or None,
        model_version=row.get("model_version"),
        model_checksum=row.get("model_checksum"),
        links=links,
        reranked=_reranked(row),
        reranker=row.get("reranker_expert") or None,
        explanation=_explanation(row),
    )


@dataclass(frozen=True)
class Points:
    """A light curve's points: time (MJD), band, value (magnitude or flux) and its error."""

    mjd: tuple[float, ...]
    band: tuple[str, ...]
    value: tuple[float, ...]
    error: tuple[float, ...]
    magnitudes: bool  # ZTF magnitudes (brighter up) or Rubin difference fluxes (nJy)


def read_lightcurves(path: Path) -> dict[str, Points]:
    """Light curves by object id: a ZTF light-curve Parquet (columns oid, mjd, fid, mag, e_mag:
    ``simulate --lightcurves``), an LSST one of ``simulate --survey lsst --lightcurves`` or an
    Avro file of Rubin alert packets."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise DataError(f"no light curves at {path}")
    if path.suffix.lower() != ".avro":
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read light curves {path}: {exc}") from None
        if {"oid", "mjd", "fid", "mag", "e_mag"} <= set(names):
            table = pq.read_table(path, columns=["oid", "mjd", "fid", "mag", "e_mag"])
            grouped: dict[str, list[tuple[float, str, float, float]]] = {}
            for r in table.to_pylist():
                band = ZTF_FID_BANDS.get(int(r["fid"]), str(r["fid"]))
                grouped.setdefault(str(r["oid"]), []).append(
                    (float(r["mjd"]), band, float(r["mag"]), float(r["e_mag"] or 0.0))
                )
            return {oid: _points(p, magnitudes=True) for oid, p in grouped.items()}
    from models.evaluation.top import read_report_lightcurves

    try:
        curves, _ = read_report_lightcurves(path)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read light curves {path}: {exc}") from None
    return {
        oid: _points(
            list(
                zip(
                    c.mjd.tolist(),
                    c.band.tolist(),
                    c.flux.tolist(),
                    c.flux_err.tolist(),
                    strict=True,
                )
            ),
            magnitudes=False,
        )
        for oid, c in curves.items()
    }


def _points(rows: list[tuple[float, str, float, float]], magnitudes: bool) -> Points:
    rows = sorted(r for r in rows if math.isfinite(r[0]) and math.isfinite(r[2]))
    return Points(
        mjd=tuple(r[0] for r in rows),
        band=tuple(r[1] for r in rows),
        value=tuple(r[2] for r in rows),
        error=tuple(r[3] if math.isfinite(r[3]) else 0.0 for r in rows),
        magnitudes=magnitudes,
    )


def layout(points: Points, survey: str, width: int = 320, height: int = 140) -> Plot | None:
    """The light curve scaled into a ``width`` x ``height`` box with margins for the axis
    labels (magnitudes: brighter up); None without points."""
    from models.evaluation.top import RUBIN_BAND_COLORS

    if not points.mjd:
        return None
    colors = RUBIN_BAND_COLORS if survey == "lsst" else ZTF_BAND_COLORS
    left, right, top, bottom = 44, 8, 8, 22
    x0, x1 = min(points.mjd), max(points.mjd)
    lows = [v - e for v, e in zip(points.value, points.error, strict=True)]
    highs = [v + e for v, e in zip(points.value, points.error, strict=True)]
    y0, y1 = min(lows), max(highs)
    x1 = x1 if x1 > x0 else x0 + 1.0
    y1 = y1 if y1 > y0 else y0 + 1.0
    span_x, span_y = width - left - right, height - top - bottom

    def px(mjd: float) -> float:
        return round(left + (mjd - x0) / (x1 - x0) * span_x, 1)

    def py(value: float) -> float:
        frac = (value - y0) / (y1 - y0)
        return round(top + (frac if points.magnitudes else 1.0 - frac) * span_y, 1)

    bands: dict[str, list[tuple[float, float, float]]] = {}
    for mjd, band, value, error in zip(
        points.mjd, points.band, points.value, points.error, strict=True
    ):
        half = round(abs(error) / (y1 - y0) * span_y, 1)
        bands.setdefault(band, []).append((px(mjd), py(value), half))
    order = "ugrizy"
    series = tuple(
        Series(b, colors.get(b, "#555555"), tuple(bands[b]))
        for b in sorted(bands, key=lambda b: (order.find(b), b))
    )
    return Plot(
        width=width,
        height=height,
        series=series,
        x_label="MJD",
        y_label="mag" if points.magnitudes else "flux (nJy)",
        x_range=(x0, x1),
        y_range=(y0, y1),
    )
