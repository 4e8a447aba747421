"""``verdicts retrain``: one expert's re-ranker (models.rerank) fitted from the verdict store, a
scores table (the model's percentile and versions) and the feature table the scores came from.

The reference population is every object of the scores table found in the feature table; the
labelled rows are the expert's verdicts on those objects (verdicts on objects the tables lack
are counted and left out)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.exceptions import DataError
from service.review.candidates import read_scores
from service.review.store import Verdict


@dataclass(frozen=True)
class Retrained:
    """What ``retrain`` did: the manifest written and the counts behind it."""

    manifest: Path
    reference_rows: int
    verdicts: dict[str, int]
    left_out: int


def _best_rows(rows: list[dict[str, Any]], survey: str) -> dict[str, dict[str, Any]]:
    """Per object of ``survey``, its scored row with the highest percentile."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        pct = row.get("percentile")
        if pct is None or not math.isfinite(pct):
            continue
        if str(row.get("survey") or survey) != survey:
            continue
        oid = str(row["oid"])
        if oid not in best or pct > best[oid]["percentile"]:
            best[oid] = row
    return best


def retrain(
    verdicts: list[Verdict],
    expert: str,
    scores: Path,
    features: Path,
    out: Path,
    *,
    survey: str = "ztf",
    seed: int = 0,
    n_trees: int = 100,
) -> Retrained:
    """Fit ``expert``'s re-ranker on the objects of ``scores`` found in ``features`` and the
    expert's ``verdicts`` among them; write it to ``out``."""
    from models.features import paper_features
    from models.rerank import fit_reranker, labels_of
    from models.table import read_table

    mine = [v for v in verdicts if v.expert == expert and v.survey == survey]
    if not mine:
        raise DataError(f"no {survey} verdicts of {expert!r} in the store")
    best = _best_rows(read_scores(scores), survey)
    if not features.exists():
        raise DataError(f"no feature table at {features}")
    table = read_table(features)
    names = tuple(n for n in paper_features() if n in table.feature_names)
    if not names:
        raise DataError(f"{features} has none of the models' features")
    position = {str(o): i for i, o in enumerate(table.oid.tolist())}
    oids = [o for o in best if o in position]
    if len(oids) < 2:
        raise DataError(f"fewer than 2 objects of {scores} are in {features}")
    X = table.columns(names)
    index = np.asarray([position[o] for o in oids], dtype=np.intp)
    pct = np.asarray([best[o]["percentile"] for o in oids], dtype=np.float64)
    kept = [v for v in mine if v.oid in position and v.oid in best]
    if not kept:
        raise DataError(
            f"none of the {len(mine)} verdicts of {expert!r} is on an object of both {scores} "
            f"and {features}"
        )
    known_index = np.asarray([position[v.oid] for v in kept], dtype=np.intp)
    known_pct = np.asarray([best[v.oid]["percentile"] for v in kept], dtype=np.float64)
    versions = Counter(
        (str(r.get("scorer")), str(r.get("top_class")), str(r.get("model_version")))
        for r in best.values()
    )
    trained_against = {
        "survey": survey,
        "scores": str(scores),
        "features": str(features),
        "models": [
            {"scorer": s, "top_class": c, "model_version": v, "rows": n}
            for (s, c, v), n in sorted(versions.items())
        ],
        "model_checksums": sorted({str(r.get("model_checksum")) for r in best.values()}),
    }
    reranker = fit_reranker(
        expert,
        names,
        X[index],
        X[known_index],
        labels_of([v.verdict for v in kept]),
        reference_percentile=pct,
        known_percentile=known_pct,
        seed=seed,
        n_trees=n_trees,
        trained_against=trained_against,
    )
    manifest = reranker.save(out)
    counts = Counter(v.verdict for v in kept)
    return Retrained(manifest, len(oids), dict(counts), len(mine) - len(kept))
