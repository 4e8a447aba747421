"""A per-expert active re-ranker: SNAD's ``AADForest`` (``coniferest``, the 'rerank' extra; Das
et al. 2017's Active Anomaly Detection on an isolation forest) fitted to one expert's verdicts,
re-ranking the anomaly model's scores.

What it learns on. Each row is the paper's model features (the ones the bundles read; undefined
values allowed) plus the model's percentile. The features, not the MCDSVDD latent space: the
latent space differs per class model and per bundle version (a re-ranker would have to be
retrained with every bundle and could not compare a Transient with a Periodic object), while the
features are one space for every class, the space experts reason in (and the explanations name),
and the kind of space Fink's AAD runs on (its own light-curve features). The percentile is added
so that the forest can also learn "high score but not what I want" (the known oddities an expert
marks ``not``). Each feature is centred
on its median, divided by its robust spread and put through ``asinh`` (isolation splits are drawn
uniformly between a column's extremes, so heavy tails would otherwise waste them); undefined
values sit one unit below the column's least value (as the paper puts them below the scaled range).

Labels: a verdict ``anomaly`` is coniferest's ``Label.ANOMALY`` (-1), ``not`` and ``bogus`` are
``Label.REGULAR`` (1); everything else in the reference population is unknown (0).

The re-ranked score. The forest's score of a row is turned into a quantile among the reference
population's scores (0: most ordinary, 1: most anomalous to this expert) and mixed with the
model's percentile: ``reranked = 100 * (blend * q_expert + (1 - blend) * percentile / 100)``, on
the percentile's scale, computable row by row in a stream. ``blend`` is fitted from the verdicts:
the percentile keeps the say it earned on them (``1 - blend = 2 AUROC - 1``, clipped to [0, 1],
of the percentile telling the expert's anomalies from the rest; 0.5 until both kinds of verdict
exist). The expert's forest moves up the look-alikes of the objects marked anomalous and down
those of the ones marked not. Without any verdict the re-ranked score is the percentile.
Hyper-parameters: coniferest's defaults (100 trees of 256 samples, ``prior_influence`` 0, budget
"auto"); ``prior_influence`` 1, 0.1 and 10 found about half as many anomalies in
benchmarks/bench_expert.py (docs/results.md, "The expert in the loop").

The artefact (:meth:`Reranker.save`, :func:`load_reranker`): a directory with ``manifest.json``
(expert, re-ranker format, coniferest version, the bundle/model versions the scores came from,
the features, hyper-parameters, checksums) and the arrays it names, ``arrays-<hash>.safetensors``
(the reference population, the labelled rows, their labels, the feature scaling, check scores),
written before the manifest, which is replaced last (a watching service never reads half a
re-ranker). coniferest's forests cannot
be serialised (its Rust trees expose no arrays; the Python objects hold lambdas, so not even
pickle works), and no pickle is wanted anyway: loading rebuilds the forest from the stored rows
with the stored seed - coniferest builds trees reproducibly from a seed whatever the thread
count - and refits the verdicts, then checks that the rebuilt forest gives the stored check
scores; a different coniferest that builds other trees is an error, not a silent change.

Over 300 lines on purpose: the features, the forest, the blend and the artefact of one re-ranker
belong together (its save and load must agree on every array).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from models.exceptions import ConfigurationError, DataError
from models.extras import RERANK, require

FORMAT_VERSION: Final = 1
MANIFEST: Final = "manifest.json"
ARRAYS: Final = "arrays.safetensors"
PERCENTILE: Final = "percentile"  # the name of the model's percentile among the columns
ANOMALY: Final = -1  # coniferest's Label.ANOMALY
REGULAR: Final = 1  # coniferest's Label.REGULAR
UNKNOWN: Final = 0
LABELS: Final = {"anomaly": ANOMALY, "not": REGULAR, "bogus": REGULAR}
CHECK_ROWS: Final = 256  # reference rows whose scores the artefact keeps to verify a reload
CHECK_TOLERANCE: Final = 1e-6
FEATURE = "the re-ranker"


class RerankError(DataError):
    """A re-ranker artefact is missing, damaged, or does not rebuild the forest it describes."""


def _coniferest() -> Any:
    return require("coniferest.aadforest", RERANK, FEATURE)


def coniferest_version() -> str:
    """The installed coniferest's version (the extra named when it is missing)."""
    from importlib.metadata import PackageNotFoundError, version

    _coniferest()
    try:
        return version("coniferest")
    except PackageNotFoundError:  # pragma: no cover - imported but without metadata
        return "unknown"


@dataclass(frozen=True)
class Scaling:
    """Per-column robust scaling: ``asinh((x - centre) / spread)``, undefined values at
    ``fill``."""

    centre: NDArray[np.float64]
    spread: NDArray[np.float64]
    fill: NDArray[np.float64]

    @classmethod
    def fit(cls, X: NDArray[np.float64]) -> Scaling:
        """The scaling of the reference rows ``X`` (NaN: undefined)."""
        n = X.shape[1]
        centre, spread, fill = np.zeros(n), np.ones(n), np.full(n, -1.0)
        for j in range(n):
            column = X[:, j][np.isfinite(X[:, j])]
            if not column.size:
                continue
            centre[j] = np.median(column)
            mad = 1.4826 * np.median(np.abs(column - centre[j]))
            std = float(np.std(column))
            spread[j] = mad if mad > 0 else (std if std > 0 else 1.0)
            fill[j] = float(np.arcsinh((column.min() - centre[j]) / spread[j])) - 1.0
        return cls(centre, spread, fill)

    def apply(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """``X`` scaled (a new array)."""
        with np.errstate(invalid="ignore"):
            out = np.arcsinh((np.asarray(X, dtype=np.float64) - self.centre) / self.spread)
        return np.where(np.isfinite(out), out, self.fill)


@dataclass
class Reranker:
    """One expert's AADForest over the features (and the model's percentile) and the blend that
    re-ranks the model's percentile; built by :func:`fit_reranker` or :func:`load_reranker`."""

    expert: str
    columns: tuple[str, ...]  # feature names, then PERCENTILE when the percentile is used
    scaling: Scaling
    reference: NDArray[np.float32]  # the unlabelled population, raw (NaN kept)
    known: NDArray[np.float32]  # the labelled rows, raw
    labels: NDArray[np.int8]  # ANOMALY or REGULAR per known row
    hyper: dict[str, Any]
    trained_against: dict[str, Any] = field(default_factory=dict)
    blend: float = 0.5
    created_at: str = ""
    forest: Any = None
    quantiles: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def uses_percentile(self) -> bool:
        return bool(self.columns) and self.columns[-1] == PERCENTILE

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.columns[:-1] if self.uses_percentile else self.columns

    def _build(self) -> None:
        aad = _coniferest()
        forest = aad.AADForest(
            n_trees=int(self.hyper["n_trees"]),
            n_subsamples=min(int(self.hyper["n_subsamples"]), len(self.reference)),
            prior_influence=float(self.hyper["prior_influence"]),
            n_jobs=1,
            random_seed=int(self.hyper["seed"]),
        )
        data = self.scaling.apply(self.reference.astype(np.float64))
        if len(self.labels):
            forest.fit_known(data, self.scaling.apply(self.known.astype(np.float64)), self.labels)
        else:
            forest.fit_known(data)
        self.forest = forest
        self.quantiles = np.sort(self._raw(self.reference))

    def _raw(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """The forest's anomaly score of raw rows, larger = more anomalous to the expert."""
        if self.forest is None:
            self._build()
        scaled = self.scaling.apply(np.asarray(rows, dtype=np.float64))
        return -np.asarray(self.forest.score_samples(scaled), dtype=np.float64)

    def rows(
        self, features: NDArray[np.floating[Any]], percentile: NDArray[np.floating[Any]] | None
    ) -> NDArray[np.float64]:
        """The re-ranker's input: ``features`` (columns in :attr:`feature_names` order) with
        the model's ``percentile`` appended when the re-ranker uses it."""
        X = np.asarray(features, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ConfigurationError(
                f"the re-ranker of {self.expert} reads {len(self.feature_names)} features, "
                f"given {X.shape[-1] if X.ndim else 0}"
            )
        if not self.uses_percentile:
            return X
        if percentile is None:
            raise ConfigurationError(f"the re-ranker of {self.expert} needs the percentile")
        return np.column_stack([X, np.asarray(percentile, dtype=np.float64)])

    def expert_quantile(self, rows: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """Per row of :meth:`rows`, the share of the reference population the expert's forest
        finds less anomalous (0-1)."""
        raw = self._raw(rows)
        if self.forest is None or not self.quantiles.size:  # pragma: no cover - built by _raw
            return np.zeros(len(raw))
        return np.searchsorted(self.quantiles, raw, side="right") / self.quantiles.size

    def rerank(
        self, features: NDArray[np.floating[Any]], percentile: NDArray[np.floating[Any]]
    ) -> NDArray[np.float64]:
        """The re-ranked score (0-100, the percentile's scale) of rows with these
        ``features`` and model ``percentile``; the percentile itself without verdicts."""
        pct = np.asarray(percentile, dtype=np.float64)
        if not len(self.labels):
            return pct.copy()
        q = self.expert_quantile(self.rows(features, pct))
        return np.asarray(100.0 * (self.blend * q + (1.0 - self.blend) * pct / 100.0))

    # --- the artefact ---------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """Write the artefact to ``directory`` (created; files replaced); the manifest's path."""
        from safetensors.numpy import save_file

        if self.forest is None:
            self._build()
        check = self._raw(self.reference[:CHECK_ROWS])
        arrays: dict[str, NDArray[Any]] = {
            "reference": np.ascontiguousarray(self.reference, dtype=np.float32),
            "known": np.ascontiguousarray(self.known.reshape(-1, len(self.columns))),
            "labels": np.ascontiguousarray(self.labels, dtype=np.int8),
            "centre": self.scaling.centre,
            "spread": self.scaling.spread,
            "fill": self.scaling.fill,
            "check": check,
        }
        try:
            directory.mkdir(parents=True, exist_ok=True)
            staged = directory / f".{ARRAYS}.{os.getpid()}.tmp"
            save_file(arrays, str(staged))
            staged.chmod(0o644)  # safetensors writes 0600: the service may run as another user
            digest = hashlib.sha256(staged.read_bytes()).hexdigest()
            name = f"{ARRAYS.removesuffix('.safetensors')}-{digest[:16]}.safetensors"
            os.replace(staged, directory / name)
            counts = {
                "anomaly": int((self.labels == ANOMALY).sum()),
                "regular": int((self.labels == REGULAR).sum()),
            }
            manifest = {
                "format_version": FORMAT_VERSION,
                "kind": "aadforest-reranker",
                "expert": self.expert,
                "created_at": self.created_at or datetime.now(UTC).isoformat(timespec="seconds"),
                "coniferest_version": coniferest_version(),
                "columns": list(self.columns),
                "uses_percentile": self.uses_percentile,
                "blend": self.blend,
                "hyperparameters": self.hyper,
                "trained_against": self.trained_against,
                "reference_rows": len(self.reference),
                "verdicts": counts,
                "arrays": {"file": name, "sha256": digest},
            }
            path = directory / MANIFEST
            staged = directory / f".{MANIFEST}.{os.getpid()}.tmp"
            staged.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
            os.replace(staged, path)  # the switch: the old manifest named only old arrays
            for stale in directory.glob("arrays*.safetensors"):
                if stale.name != name:
                    stale.unlink()
        except OSError as exc:
            raise RerankError(f"cannot write the re-ranker to {directory}: {exc}") from None
        return path


def labels_of(verdicts: list[str]) -> NDArray[np.int8]:
    """Stored verdicts as coniferest labels: anomaly -> -1, not/bogus -> 1."""
    try:
        return np.asarray([LABELS[v] for v in verdicts], dtype=np.int8)
    except KeyError as exc:
        raise ConfigurationError(f"unknown verdict {exc.args[0]!r}") from None


def _auto_blend(percentile: NDArray[np.floating[Any]] | None, labels: NDArray[np.int8]) -> float:
    """The expert forest's share of the re-ranked score: 1 minus the say the model's percentile
    earned on the labelled rows, ``2 AUROC - 1`` clipped to [0, 1] (the percentile's AUROC for
    telling the expert's anomalies from the rest); 0.5 before both kinds of verdict exist."""
    if percentile is None:
        return 1.0
    pct = np.asarray(percentile, dtype=np.float64)
    pos, neg = pct[labels == ANOMALY], pct[labels == REGULAR]
    if not pos.size or not neg.size:
        return 0.5
    auroc = float(
        (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    )
    return float(1.0 - np.clip(2.0 * auroc - 1.0, 0.0, 1.0))


def fit_reranker(
    expert: str,
    feature_names: tuple[str, ...],
    reference: NDArray[np.floating[Any]],
    known: NDArray[np.floating[Any]],
    labels: NDArray[np.integer[Any]],
    *,
    reference_percentile: NDArray[np.floating[Any]] | None = None,
    known_percentile: NDArray[np.floating[Any]] | None = None,
    n_trees: int = 100,
    n_subsamples: int = 256,
    prior_influence: float = 0.0,
    seed: int = 0,
    blend: float | None = None,
    trained_against: dict[str, Any] | None = None,
) -> Reranker:
    """An expert's re-ranker: the forest built on the ``reference`` rows (the scored
    population, features in ``feature_names`` order) and fitted to the ``known`` rows'
    ``labels`` (:data:`ANOMALY` or :data:`REGULAR`). Give both percentiles to use the model's
    percentile as a column too (the loop); neither to use the features alone."""
    if (reference_percentile is None) != (known_percentile is None):
        raise ConfigurationError("give the percentile of both the reference and the known rows")
    if blend is not None and not 0.0 <= blend <= 1.0:
        raise ConfigurationError(f"blend must be in [0, 1], got {blend}")
    ref = np.asarray(reference, dtype=np.float64)
    kn = np.asarray(known, dtype=np.float64).reshape(-1, len(feature_names))
    lab = np.asarray(labels, dtype=np.int8)
    if ref.ndim != 2 or ref.shape[1] != len(feature_names) or len(ref) < 2:
        raise ConfigurationError("the reference population needs at least 2 rows of the features")
    if len(kn) != len(lab) or not np.isin(lab, (ANOMALY, REGULAR)).all():
        raise ConfigurationError("one label per known row, each -1 (anomaly) or 1 (regular)")
    columns = tuple(feature_names)
    if reference_percentile is not None and known_percentile is not None:
        ref = np.column_stack([ref, np.asarray(reference_percentile, dtype=np.float64)])
        kn = np.column_stack([kn, np.asarray(known_percentile, dtype=np.float64)])
        columns = (*columns, PERCENTILE)
    reranker = Reranker(
        expert=expert,
        columns=columns,
        scaling=Scaling.fit(ref),
        reference=ref.astype(np.float32),
        known=kn.astype(np.float32),
        labels=lab,
        hyper={
            "n_trees": n_trees,
            "n_subsamples": n_subsamples,
            "prior_influence": prior_influence,
            "seed": seed,
        },
        trained_against=dict(trained_against or {}),
        blend=_auto_blend(known_percentile, lab) if blend is None else blend,
    )
    reranker._build()
    return reranker


def load_reranker(directory: Path) -> Reranker:
    """The re-ranker saved in ``directory``, its forest rebuilt and checked against the stored
    scores (:class:`RerankError` if anything differs)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            found = manifest.get("format_version") if isinstance(manifest, dict) else None
            raise RerankError(
                f"{path} is not a re-ranker of format {FORMAT_VERSION} (found {found})"
            )
        stored: dict[str, Any] = manifest.get("arrays") or {}
        if not isinstance(stored, dict):
            raise RerankError(f"{path} has no arrays entry")
        name = str(stored.get("file", ARRAYS))
        if Path(name).name != name or not name.endswith(".safetensors"):
            raise RerankError(f"{path} names arrays outside its directory: {name!r}")
        blob = (directory / name).read_bytes()
    except FileNotFoundError as exc:
        raise RerankError(f"no re-ranker in {directory}: {exc.filename} is missing") from None
    except (OSError, ValueError) as exc:
        raise RerankError(f"cannot read the re-ranker in {directory}: {exc}") from None
    if hashlib.sha256(blob).hexdigest() != stored.get("sha256"):
        raise RerankError(f"{directory / name} does not match its checksum in {path}")
    try:
        arrays = load(blob)  # the bytes checked, not the file read again
    except SafetensorError as exc:
        raise RerankError(f"cannot read {directory / name}: {exc}") from None
    columns = tuple(str(c) for c in manifest["columns"])
    reranker = Reranker(
        expert=str(manifest["expert"]),
        columns=columns,
        scaling=Scaling(arrays["centre"], arrays["spread"], arrays["fill"]),
        reference=arrays["reference"],
        known=arrays["known"].reshape(-1, len(columns)),
        labels=arrays["labels"],
        hyper=dict(manifest["hyperparameters"]),
        trained_against=dict(manifest.get("trained_against", {})),
        blend=float(manifest["blend"]),
        created_at=str(manifest.get("created_at", "")),
    )
    check = reranker._raw(reranker.reference[:CHECK_ROWS])
    if check.shape != arrays["check"].shape or not np.allclose(
        check, arrays["check"], rtol=CHECK_TOLERANCE, atol=CHECK_TOLERANCE
    ):
        raise RerankError(
            f"the re-ranker in {directory} does not rebuild the forest it was saved with "
            f"(saved with coniferest {manifest.get('coniferest_version')}, installed "
            f"{coniferest_version()}): retrain it"
        )
    return reranker
