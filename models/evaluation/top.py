"""The paper's real-world check: the N most anomalous objects per predicted subclass, with the
features that make them stand out (the scores come from the service's engine: ``top``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    with np.errstate(all="ignore"):
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pyarrow.parquet as pq

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
