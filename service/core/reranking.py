"""The expert's re-ranker in the stream (``model.reranker``) and its hot reload.

Each scored micro-batch is re-ranked as it is published (in the service's thread, after the
inference): the re-ranker (:mod:`models.rerank`) reads the features it names - taken by name from
the row's features in its bundle's order, undefined where the bundle lacks one - and the model's
percentile, and every record gets ``reranked_percentile`` and the re-ranker's identity (expert,
version = its training time, checksum = SHA-256 of its ``manifest.json``; anomaly-score 1.3).
Without ``model.reranker`` the four fields are null and nothing is computed.

Hot reload (:class:`RerankerSlot`): every ``model.reload_interval_s`` the engine, between
micro-batches, asks the slot whether the artefact changed (its fingerprint:
:mod:`service.core.reloading`). When it changed, the new re-ranker is loaded from
the resolved directory (the forest rebuilt and checked against its stored scores) and only then
swapped in, in one assignment: a batch is re-ranked by one re-ranker, the old or the new, and
nothing is drained, redone or dropped. A load that fails (a half-written or damaged artefact, a
missing directory) keeps the old re-ranker, is logged (``reranker_reload_failed``) and counted
(``alert_anomaly_model_reloads_total{outcome="failed"}``), and is retried when the fingerprint
changes again (a retrain writing in place finishes with its manifest: a new fingerprint). The
robust way to publish one is to write it to a new directory and swap a symlink atomically:
``ln -sfn ana-v2 rerankers/current.new && mv -T rerankers/current.new rerankers/current``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import structlog
from numpy.typing import NDArray

from models.exceptions import AlertAnomalyError
from service.core.reloading import DirectoryWatch, fingerprint
from service.exceptions import SettingsError

log = structlog.get_logger(__name__)

FIELDS = ("reranked_percentile", "reranker_expert", "reranker_version", "reranker_checksum")
NO_RERANKER: dict[str, Any] = dict.fromkeys(FIELDS)  # the columns of a batch not re-ranked


@dataclass(frozen=True)
class LoadedReranker:
    """A re-ranker as the service uses it, with its identity."""

    reranker: Any  # models.rerank.Reranker (coniferest is imported only when one is configured)
    directory: Path  # where it was loaded from, symlinks resolved
    checksum: str  # SHA-256 of its manifest.json
    version: str  # its manifest's created_at

    @property
    def expert(self) -> str:
        return str(self.reranker.expert)

    def columns(
        self,
        feature_names: Sequence[str],
        features: NDArray[np.float32],
        percentile: NDArray[np.floating[Any]],
    ) -> dict[str, Any]:
        """The re-ranker's columns of a batch: ``features`` (rows x ``feature_names``, a
        bundle's order) and the model's ``percentile``."""
        reranked = self.reranker.rerank(_select(feature_names, features, self), percentile)
        return {
            "reranked_percentile": np.asarray(reranked, dtype=np.float32).tolist(),
            "reranker_expert": self.expert,
            "reranker_version": self.version,
            "reranker_checksum": self.checksum,
        }


def _select(
    names: Sequence[str], features: NDArray[np.float32], loaded: LoadedReranker
) -> NDArray[np.float64]:
    """The re-ranker's features, by name, from a bundle's; NaN (undefined) where it lacks one."""
    position = {name: j for j, name in enumerate(names)}
    wanted = loaded.reranker.feature_names
    out = np.full((len(features), len(wanted)), np.nan)
    index = [(i, position[n]) for i, n in enumerate(wanted) if n in position]
    if index:
        ours, theirs = (list(t) for t in zip(*index, strict=True))
        out[:, ours] = np.asarray(features, dtype=np.float64)[:, theirs]
    return out


def load(directory: Path) -> LoadedReranker:
    """The re-ranker in ``directory`` (a symlink resolved once: the manifest and the arrays come
    from the same directory); :class:`~models.rerank.RerankError` if it cannot be used."""
    import json

    from models.rerank import MANIFEST, RerankError, load_reranker

    try:
        real = directory.resolve(strict=True)
        manifest = (real / MANIFEST).read_bytes()
    except OSError as exc:
        raise RerankError(f"no re-ranker in {directory} ({MANIFEST}: {exc.strerror})") from None
    reranker = load_reranker(real)
    checksum = hashlib.sha256(manifest).hexdigest()
    if hashlib.sha256((real / MANIFEST).read_bytes()).hexdigest() != checksum:
        raise RerankError(f"{real / MANIFEST} changed while it was loaded")
    version = str(json.loads(manifest).get("created_at", ""))
    return LoadedReranker(reranker, real, checksum, version)


class Reload(NamedTuple):
    """What a poll found: a new re-ranker swapped in, or one that could not be loaded."""

    outcome: Literal["reloaded", "failed"]
    detail: str  # the new checksum, or the error


class RerankerSlot:
    """The current re-ranker and its hot reload (see the module docstring). ``check`` raises
    :class:`~service.exceptions.SettingsError` for a re-ranker the bundles cannot feed (at start:
    the error; on reload: the old one kept). ``load``, ``fingerprint`` and ``clock`` are the
    I/O, replaceable in tests."""

    def __init__(
        self,
        directory: Path | None,
        interval_s: float,
        *,
        loader: Callable[[Path], LoadedReranker] = load,
        check: Callable[[LoadedReranker], None] = lambda loaded: None,
        fingerprinter: Callable[[Path], str | None] = fingerprint,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self._load, self._check = loader, check
        self.current: LoadedReranker | None = None
        watched = [] if directory is None else [directory]
        self._watch = DirectoryWatch(watched, interval_s, fingerprinter=fingerprinter, clock=clock)
        if directory is None:
            return
        try:
            self.current = loader(directory)
            check(self.current)
        except SettingsError as exc:
            raise SettingsError(f"model.reranker: {exc}") from exc
        except AlertAnomalyError as exc:  # RerankError, a missing extra: the setting is wrong
            raise SettingsError(f"model.reranker: {exc}") from exc
        log.info(
            "reranker_loaded",
            expert=self.current.expert,
            version=self.current.version,
            checksum=self.current.checksum,
            directory=str(self.current.directory),
        )

    def poll(self) -> Reload | None:
        """Between micro-batches: when the interval is up, swap in a changed re-ranker (or
        report why it cannot be); None when nothing changed or it is not time yet."""
        if self.directory is None or not self._watch.changed():
            return None
        old = self.current
        try:
            if self._watch.missing:
                raise FileNotFoundError(f"no re-ranker manifest in {self.directory}")
            new = self._load(self.directory)
            self._check(new)
        except Exception as exc:  # whatever is wrong with the new one, the old one scores on
            log.error(
                "reranker_reload_failed",
                directory=str(self.directory),
                error=str(exc),
                kept=None if old is None else old.checksum,
            )
            return Reload("failed", str(exc))
        self.current = new
        log.info(
            "reranker_reloaded",
            expert=new.expert,
            version=new.version,
            checksum=new.checksum,
            previous=None if old is None else old.checksum,
            directory=str(new.directory),
        )
        return Reload("reloaded", new.checksum)

    def columns(
        self,
        feature_names: Sequence[str],
        features: Sequence[NDArray[np.float32]],
        percentile: NDArray[np.floating[Any]],
    ) -> dict[str, Any]:
        """The re-ranker's columns of a batch (:data:`NO_RERANKER` without one)."""
        if self.current is None:
            return NO_RERANKER
        return self.current.columns(feature_names, np.stack(features), percentile)
