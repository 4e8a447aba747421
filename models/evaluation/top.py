"""The paper's real-world check: the N objects with the highest anomaly scores per predicted
subclass, with the features that make them stand out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.bundle import DEFAULT_SCORERS, bundle_dirname, load_bundle
from models.scoring import Scorer
from models.table import AlertTable
from models.taxonomy import TOP_CLASSES


@dataclass(frozen=True)
class Anomaly:
    oid: str
    true_subclass: str
    score: float
    percentile: float
    extremes: tuple[tuple[str, float, float], ...]  # (feature, value, robust z-score)


def robust_z(features: NDArray[np.float64]) -> NDArray[np.float64]:
    """(x - median) / (1.4826 MAD) per column, NaN where undefined; a zero MAD uses 1e-9."""
    median = np.nanmedian(features, axis=0)
    mad = 1.4826 * np.nanmedian(np.abs(features - median), axis=0)
    return np.asarray((features - median) / np.where(mad > 0, mad, 1e-9))


def top_anomalies(
    table: AlertTable, bundles: Path, n: int, survey: str = "ztf"
) -> dict[str, list[Anomaly]]:
    """Per predicted subclass, its n highest-scoring objects, scored by the model of their
    predicted top-level class (the service's routing and default scorers)."""
    routed = np.array(TOP_CLASSES)[np.argmax(table.prob_top, axis=1)]
    predicted = table.predicted_subclass()
    scores = np.full(len(table), np.nan)
    percentiles = np.full(len(table), np.nan)
    for top in TOP_CLASSES:
        rows = np.flatnonzero(routed == top)
        if rows.size == 0:
            continue
        scorer = Scorer(
            load_bundle(bundles / bundle_dirname(survey, top, DEFAULT_SCORERS[top])), "cpu"
        )
        result = scorer.score(table.take(rows).columns(scorer.feature_names).astype(np.float32))
        scores[rows], percentiles[rows] = result.raw, result.percentile
    out: dict[str, list[Anomaly]] = {}
    for subclass in sorted(set(predicted.tolist())):
        members = np.flatnonzero(predicted == subclass)
        z = robust_z(table.features[members])
        entries = []
        for i in members[np.argsort(-scores[members])][:n]:
            row_z = z[np.flatnonzero(members == i)[0]]
            order = [
                j
                for j in np.argsort(-np.nan_to_num(np.abs(row_z), nan=-1.0))
                if np.isfinite(row_z[j])
            ]
            extremes = tuple(
                (table.feature_names[j], float(table.features[i, j]), float(row_z[j]))
                for j in order[:3]
            )
            entries.append(
                Anomaly(
                    str(table.oid[i]),
                    str(table.subclass[i]),
                    float(scores[i]),
                    float(percentiles[i]),
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
