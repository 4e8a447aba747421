"""The paper's real-world check: the N most anomalous objects per predicted subclass, with the
features that make them stand out (the scores come from the service's engine: ``top``); and the
Rubin anomaly-detection tutorial's report: the score histogram (log counts), a 5 x 4 grid of the
20 top outliers' difference-flux light curves in Rubin's band colours, and the top outlier's
summary."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.table import AlertTable

SPREAD_FLOOR = 0.1  # of a feature's standard deviation: the least spread a z-score divides by


@dataclass(frozen=True)
class Anomaly:
    oid: str
    true_subclass: str
    routed_class: str
    score: float
    percentile: float
    extremes: tuple[tuple[str, float, float], ...]  # (feature, value, robust z-score)


def robust_z(features: NDArray[np.float64]) -> NDArray[np.float64]:
    """(x - median) / spread per column, NaN where undefined. The spread is 1.4826 x the median
    absolute deviation, but at least :data:`SPREAD_FLOOR` x the column's standard deviation
    (a column that is nearly constant within a class would otherwise give huge z-scores); a
    column without spread gives NaN."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        median = np.nanmedian(features, axis=0)
        mad = 1.4826 * np.nanmedian(np.abs(features - median), axis=0)
        spread = np.fmax(mad, SPREAD_FLOOR * np.nanstd(features, axis=0))
        return np.asarray((features - median) / np.where(spread > 0, spread, np.nan))


def rank_anomalies(
    table: AlertTable,
    routed: NDArray[np.str_],
    percentile: NDArray[np.float64],
    score: NDArray[np.float64],
    n: int,
) -> dict[str, list[Anomaly]]:
    """Per predicted subclass, its n most anomalous objects: by percentile (comparable across
    the models of different classes), the raw score breaking ties; unscored rows (NaN) last
    and left out. Each with the three features where it is most extreme within its predicted
    subclass."""
    predicted = table.predicted_subclass()
    out: dict[str, list[Anomaly]] = {}
    for subclass in sorted(set(predicted.tolist())):
        members = np.flatnonzero((predicted == subclass) & np.isfinite(percentile))
        if not members.size:
            continue
        z = robust_z(table.features[members])
        order = np.lexsort((-score[members], -percentile[members]))[:n]
        entries = []
        for k in order.tolist():
            i = members[k]
            row_z = z[k]
            finite = np.flatnonzero(np.isfinite(row_z))
            strongest = finite[np.argsort(-np.abs(row_z[finite]), kind="stable")][:3]
            extremes = tuple(
                (table.feature_names[j], float(table.features[i, j]), float(row_z[j]))
                for j in strongest.tolist()
            )
            entries.append(
                Anomaly(
                    str(table.oid[i]),
                    str(table.subclass[i]),
                    str(routed[i]),
                    float(score[i]),
                    float(percentile[i]),
                    extremes,
                )
            )
        out[subclass] = entries
    return out


def plot_lightcurves(top: dict[str, list[Anomaly]], lightcurves: Path, out: Path) -> list[Path]:
    """One PNG per predicted subclass with the light curves (g, r) of its top objects."""
    import pyarrow.parquet as pq

    from models.extras import pyplot

    plt = pyplot("plotting light curves (--plot)")

    arrow = pq.read_table(lightcurves, columns=["oid", "mjd", "fid", "mag", "e_mag"])
    columns = {
        name: arrow.column(name).to_numpy(zero_copy_only=False) for name in arrow.column_names
    }
    by_oid: dict[str, NDArray[np.intp]] = {}
    for oid in {e.oid for entries in top.values() for e in entries}:
        by_oid[oid] = np.flatnonzero(columns["oid"] == oid)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for subclass, entries in top.items():
        shown = [e for e in entries if by_oid[e.oid].size]
        if not shown:
            continue
        fig, axes = plt.subplots(
            1, len(shown), figsize=(2.4 * len(shown), 2.2), dpi=80, squeeze=False
        )
        for ax, entry in zip(axes[0], shown, strict=True):
            rows = by_oid[entry.oid]
            for fid, colour in ((1, "tab:green"), (2, "tab:red")):
                band = rows[columns["fid"][rows] == fid]
                ax.errorbar(
                    columns["mjd"][band],
                    columns["mag"][band],
                    columns["e_mag"][band],
                    fmt=".",
                    ms=2,
                    lw=0.5,
                    color=colour,
                )
            ax.invert_yaxis()
            ax.set_title(f"{entry.oid}\n{entry.true_subclass}, p{entry.percentile:.0f}", fontsize=6)
            ax.tick_params(labelsize=5)
        fig.suptitle(f"predicted {subclass}: top anomalies", fontsize=8)
        fig.tight_layout()
        path = out / f"top-{subclass.replace('/', '-')}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


# --- the Rubin tutorial's report -------------------------------------------------------------
# Rubin's band colours and symbols for light backgrounds, as lsst.utils.plotting's
# get_multiband_plot_colors() and get_multiband_plot_symbols() define them (lsst-utils
# 30.2026.4300, lsst/utils/plotting/figures.py; RTN-045's colour-blind-friendly palette).
RUBIN_BAND_COLORS: Final[dict[str, str]] = {
    "u": "#1600EA",
    "g": "#31DE1F",
    "r": "#B52626",
    "i": "#370201",
    "z": "#BA52FF",
    "y": "#61A2B3",
}
RUBIN_BAND_SYMBOLS: Final[dict[str, str]] = {
    "u": "o",
    "g": "^",
    "r": "v",
    "i": "s",
    "z": "*",
    "y": "p",
}
GRID_ROWS, GRID_COLUMNS = 5, 4
# The tutorial prints the top outlier's r-band mean, scatter and linear slope. Alert packets
# carry no linear fit: its light-curve equivalent is light-curve's LinearFit slope.
SUMMARY_FEATURES: Final[tuple[tuple[str, str], ...]] = (
    ("r_psfFluxMean", "r-band PSF Flux Mean"),
    ("r_psfFluxSigma", "r-band PSF Flux Sigma"),
    ("lc_r_linear_fit_slope", "r-band PSF Flux Linear Slope (light-curve LinearFit)"),
)


@dataclass(frozen=True)
class BandCurve:
    """Difference-flux points of one object: MJD, band name, flux and error (nJy)."""

    mjd: NDArray[np.float64]
    band: NDArray[np.str_]
    flux: NDArray[np.float64]
    flux_err: NDArray[np.float64]


def read_report_lightcurves(
    path: Path,
) -> tuple[dict[str, BandCurve], dict[str, tuple[float, float]]]:
    """Light curves (and positions) for the report: an LSST light-curve Parquet file of
    ``alert-anomaly simulate --survey lsst --lightcurves``, or an Avro container of Rubin alert
    packets (each object's latest packet: its diaSource and history)."""
    if path.suffix.lower() == ".avro":
        from models import rubin

        latest: dict[str, dict[str, Any]] = {}
        for packet in rubin.read_container(path):
            obj = packet.get("diaObject") or {}
            oid = str(obj.get("diaObjectId", packet.get("diaSource", {}).get("diaObjectId")))
            latest[oid] = packet
        curves, positions = {}, {}
        for oid, packet in latest.items():
            lc = rubin.photometry(packet)
            curves[oid] = BandCurve(lc.mjd, lc.band.astype(str), lc.flux, lc.flux_err)
            obj = packet.get("diaObject") or {}
            if obj.get("ra") is not None:
                positions[oid] = (float(obj["ra"]), float(obj["dec"]))
        return curves, positions
    from models.simulate.lsst import BANDS
    from models.simulate.lsst_dataset import read_lsst_lightcurves

    lsst, positions = read_lsst_lightcurves(path)
    bands = np.asarray(BANDS)
    return {
        oid: BandCurve(c.mjd, bands[c.band.astype(int)], c.diff, c.diff_err)
        for oid, c in lsst.items()
    }, positions


def top_outliers(oid: NDArray[np.str_], score: NDArray[np.float64], n: int = 20) -> list[int]:
    """Row indices of the ``n`` highest scores (NaN left out), highest first, ties by row."""
    finite = np.flatnonzero(np.isfinite(score))
    order = finite[np.argsort(-score[finite], kind="stable")]
    return [int(i) for i in order[:n]]


def plot_score_histogram(score: NDArray[np.float64], path: Path, title: str) -> Path:
    """The tutorial's histogram: 50 bins of the scores, counts on a log axis."""
    from models.extras import pyplot

    plt = pyplot("the report (--report)")
    fig = plt.figure(figsize=(10, 6), dpi=80)
    plt.title(title)
    plt.hist(score[np.isfinite(score)], bins=50, log=True, color=RUBIN_BAND_COLORS["u"])
    plt.xlabel("Anomaly score (higher = more anomalous)")
    plt.ylabel("Number of DiaObjects")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_outlier_grid(
    ids: list[str], titles: list[str], curves: dict[str, BandCurve], path: Path, title: str
) -> Path:
    """The tutorial's 5 x 4 grid: difference flux against MJD per band of each of the top
    outliers (Rubin's band colours and symbols); an object without a light curve says so."""
    from models.extras import SIM, pyplot, require

    plt = pyplot("the report (--report)")
    line2d = require("matplotlib.lines", SIM, "the report (--report)").Line2D
    fig, grid = plt.subplots(GRID_ROWS, GRID_COLUMNS, figsize=(15, 15), dpi=72)
    axes = grid.flatten()
    for i, ax in enumerate(axes):
        if i >= len(ids):
            ax.set_axis_off()
            continue
        curve = curves.get(ids[i])
        if curve is None or curve.mjd.size == 0:
            ax.text(0.5, 0.5, "no light curve", ha="center", va="center", transform=ax.transAxes)
        else:
            for band, colour in RUBIN_BAND_COLORS.items():
                sel = curve.band == band
                if sel.any():
                    ax.errorbar(
                        curve.mjd[sel], curve.flux[sel], yerr=curve.flux_err[sel],
                        fmt=RUBIN_BAND_SYMBOLS[band], color=colour, label=band, alpha=0.7,
                        ms=4, lw=0.8,
                    )  # fmt: skip
        ax.set_title(titles[i], fontsize=9)
        ax.tick_params(labelsize=7)
        if i >= (GRID_ROWS - 1) * GRID_COLUMNS:
            ax.set_xlabel("Modified Julian Date")
        if i % GRID_COLUMNS == 0:
            ax.set_ylabel("Difference Flux (nJy)")
    handles = [
        line2d([], [], color=c, marker=RUBIN_BAND_SYMBOLS[b], ls="", label=b)
        for b, c in RUBIN_BAND_COLORS.items()
    ]
    fig.legend(handles=handles, loc="upper right", ncol=6, fontsize=9)
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def top_outlier_lines(
    oid: str, position: tuple[float, float] | None, features: dict[str, float]
) -> list[str]:
    """The tutorial's printout of the top outlier: id, RA, Dec and its r-band summaries."""
    ra, dec = position if position is not None else (float("nan"), float("nan"))
    lines = ["Top Outlier", f"  DiaObject ID: {oid}", f"  RA: {ra:.6f}", f"  Dec: {dec:.6f}"]
    for name, label in SUMMARY_FEATURES:
        if name in features:
            lines.append(f"  {label}: {features[name]:.6g}")
    return lines
