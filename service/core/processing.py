"""Decoding, routing and scoring of alerts, without I/O: the one code path shared by every
pipeline (:mod:`service.pipeline`) - the live service, replays and offline scoring.

Messages (or files, or table rows) are decoded into columns (:mod:`service.io.codecs.decoding`)
and routed into :class:`Row` s (:mod:`service.core.routing`) - one per record, for the top-level
class with the highest probability, holding the float32 features in that class's bundle order -
and a batch of rows of one class becomes anomaly-score records (``schemas/anomaly-score``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import structlog
import torch
from numpy.typing import NDArray

from models.bundle import load_bundle
from models.exceptions import BundleError
from models.explain import Explanation
from models.resources import bundle_dirname
from models.rubin import LIGHTCURVE_PREFIX
from models.scoring import Scorer, resolve_device
from models.taxonomy import MODEL_CLASSES
from service import __version__
from service.config import Settings
from service.core.inference import InlineInference, ModelFile, ProcessInference, choose_mode
from service.core.reloading import DirectoryWatch
from service.core.reranking import LoadedReranker, RerankerSlot
from service.core.routing import Route, Router
from service.exceptions import SettingsError
from service.io.codecs.decoding import MessageDecoder
from service.io.codecs.surveys import get_survey
from service.records import Input, Lineage, Routed, Row, ScoredBatch

log = structlog.get_logger(__name__)


def load_routes(settings: Settings, device: torch.device) -> dict[str, Route]:
    """Load and verify the bundle of every configured top-level class."""
    routes: dict[str, Route] = {}
    survey = settings.model.survey
    for top, scorer_kind in settings.model.scorers.items():
        if top not in MODEL_CLASSES:
            raise SettingsError(
                f"model.scorers: unknown class {top!r} (known: {', '.join(MODEL_CLASSES)})"
            )
        # resolved: a symlink swapped later leads to another bundle (hot reload)
        path = _bundle_path(settings, top).resolve()
        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            raise SettingsError(f"model for {survey}/{top} ({scorer_kind}): {exc}") from exc
        if (bundle.manifest.survey, bundle.manifest.top_class) != (survey, top):
            raise SettingsError(
                f"{path} is a {bundle.manifest.survey}/{bundle.manifest.top_class} bundle"
            )
        routes[top] = Route(top, Scorer(bundle, device), path)
    if not routes:
        raise SettingsError("model.scorers is empty: nothing could be scored")
    return routes


def _bundle_path(settings: Settings, top: str) -> Path:
    kind = settings.model.scorers[top]
    return settings.model.bundles_dir / bundle_dirname(settings.model.survey, top, kind)


class AlertProcessor:
    """Everything between message bytes and anomaly-score records."""

    def __init__(self, settings: Settings) -> None:
        self.survey = get_survey(settings.model.survey)
        # One thread by default: inference is a small share of the time per alert, and idle
        # OpenMP workers spin on the cores that the decoding and librdkafka need.
        torch.set_num_threads(settings.model.cpu_threads)
        self.device = resolve_device(settings.model.device)
        # the bundles' directories as configured (a symlink among them followed at each look),
        # fingerprinted before they are loaded: a change meanwhile is seen at the first look
        self.settings = settings
        self.bundle_watch = DirectoryWatch(
            [_bundle_path(settings, top) for top in settings.model.scorers],
            settings.model.reload_interval_s,
        )
        self.routes = load_routes(settings, self.device)
        lightcurves = any(
            name.startswith(LIGHTCURVE_PREFIX)
            for r in self.routes.values()
            for name in r.feature_names
        )
        wanted = frozenset(name for r in self.routes.values() for name in r.feature_names)
        self.decoder = MessageDecoder(settings.input, self.survey, lightcurves, wanted)
        self.router = Router(
            self.routes, settings.model.min_feature_coverage, settings.model.min_feature_values
        )
        self._check_schema_coverage()
        self._paths = {"batch": 0, "generic": 0}
        # the expert's re-ranker (model.reranker), swapped between batches when it changes
        self.reranking = RerankerSlot(
            settings.model.reranker, settings.model.reload_interval_s, check=self._check_reranker
        )
        self.explain = settings.explained_features
        if settings.model.explain_features and not self.explain:
            log.info("scores_unexplained", reason=f"output.format {settings.output.format}")
        for route in self.routes.values():
            if self.explain and route.scorer.unexplained:
                log.warning(
                    "scores_unexplained",
                    model=route.scorer.bundle.name,
                    reason=route.scorer.unexplained,
                )

    def _check_schema_coverage(self) -> None:
        """Input schemas that name the features (features as a record): every model must find
        at least ``model.min_feature_coverage`` of its features there, and is told which it
        lacks."""
        for header, learner in self.decoder.learners.items():
            fields = learner.shape.record_fields
            if fields is None:
                continue
            names = self.decoder.canonical(tuple(name for name, _ in fields))
            for top, route in self.routes.items():
                match = self.router.match(names, top)
                where = f"input schema{f' (id {header[1:].hex()})' if header else ''}"
                if match.coverage < self.router.min_coverage:
                    raise SettingsError(
                        f"{where} carries {match.coverage:.0%} of the features of "
                        f"{route.scorer.bundle.name} (model.min_feature_coverage is "
                        f"{self.router.min_coverage:.0%}); absent: {', '.join(match.absent[:8])}"
                    )
                if match.absent:
                    log.warning(
                        "input_schema_lacks_features",
                        model=route.scorer.bundle.name,
                        coverage=round(match.coverage, 4),
                        absent=list(match.absent),
                    )

    def _check_reranker(self, loaded: LoadedReranker) -> None:
        """SettingsError unless every bundle carries at least ``model.min_feature_coverage`` of
        the features the re-ranker reads (a re-ranker of other features, e.g. ZTF's over LSST
        bundles, would rank every row on its fill values)."""
        wanted = loaded.reranker.feature_names
        for route in self.routes.values():
            present = len(set(wanted) & set(route.feature_names))
            if present < self.settings.model.min_feature_coverage * len(wanted):
                raise SettingsError(
                    f"the re-ranker of {loaded.expert} ({loaded.directory}) reads "
                    f"{len(wanted)} features, {route.path} has {present} of them "
                    f"(model.min_feature_coverage is {self.settings.model.min_feature_coverage})"
                )

    def load_changed_routes(self) -> dict[str, Route]:
        """The bundles now configured, loaded and verified (hot reload); SettingsError if one
        does not load or reads other features than the one it replaces (that needs a
        restart: the decoder and the router know the features)."""
        routes = load_routes(self.settings, self.device)
        for top, route in routes.items():
            if route.feature_names != self.routes[top].feature_names:
                raise SettingsError(
                    f"{route.path} reads other features than {self.routes[top].path}: restart "
                    "the service to change the features"
                )
        return routes

    def swap_routes(self, routes: dict[str, Route]) -> None:
        """Score with ``routes`` from now on (the router shares the dict)."""
        self.routes.update(routes)

    def decode_paths(self) -> dict[str, int]:
        """How many messages each decoder path handled: ``batch``
        (``service.io.codecs.batchdecode``) or ``generic`` (fastavro)."""
        return dict(self._paths)

    def route(self, inputs: Sequence[Input]) -> list[Routed]:
        """Each input's rows, or the InputError that makes it a dead letter: the messages among
        ``inputs`` are decoded together, decoded records (table rows) input by input; a skipped
        input (:attr:`Input.skipped`) has no rows."""
        messages = [item for item in inputs if item.records is None]
        routed = iter(self.rows_many([m.value for m in messages], [m.source for m in messages]))
        out: list[Routed] = []
        for item in inputs:
            if item.records is None:
                out.append(next(routed))
            elif item.skipped:
                out.append([])
            else:
                [result] = self.router.route(
                    self.decoder.decode_records(item.records), [item.source]
                )
                out.append(result)
        return out

    def rows_many(self, values: Sequence[bytes | None], sources: Sequence[Lineage]) -> list[Routed]:
        """Each message's routed rows, or the InputError that makes it a dead letter."""
        decoded = self.decoder.decode(values)
        for path, n in decoded.paths.items():
            self._paths[path] += n
        return self.router.route(decoded, sources)

    def scored_batch(
        self,
        top: str,
        rows: list[Row],
        raw: NDArray[np.float32],
        percentile: NDArray[np.float32],
        nearest: NDArray[np.int64],
        seconds: float,
        explanation: Explanation | None = None,
    ) -> ScoredBatch:
        """The anomaly-score records of scored rows (``nearest``: index of the nearest centre;
        ``explanation``: their top features, else every record's explanation is empty),
        re-ranked by the current re-ranker if there is one."""
        target = self.routes[top]
        manifest = target.bundle.manifest
        subclasses = manifest.centre_subclasses
        sources = [row.source for row in rows]
        topics = [s.topic for s in sources]
        columns = {
            "oid": [row.oid for row in rows],
            "survey": self.survey.name,
            "top_class": top,
            "top_class_probability": [row.top_probability for row in rows],
            "scorer": manifest.scorer,
            "score": raw.tolist(),
            "percentile": percentile.tolist(),
            "nearest_subclass": [subclasses[i] for i in nearest.tolist()] if subclasses else None,
            "model_version": manifest.model_version,
            "model_checksum": target.bundle.checksum,
            "scored_at": int(datetime.now(UTC).timestamp() * 1000),
            "source_topic": topics[0] if topics.count(topics[0]) == len(topics) else topics,
            "source_partition": [s.partition for s in sources],
            "source_offset": [s.offset for s in sources],
            "source_timestamp": [s.timestamp_ms for s in sources],
            "service_version": __version__,
            "feature_coverage": [row.coverage for row in rows],
            "explanation": () if explanation is None else _explanations(target, explanation),
            **self.reranking.columns(
                target.feature_names, [row.features for row in rows], percentile
            ),
        }
        return ScoredBatch(top, columns, raw, percentile, seconds)


def _explanations(route: Route, explanation: Explanation) -> list[list[dict[str, object]]]:
    """Every row's explanation as records of the schema's ``feature_contribution`` (made in
    one pass over the explained rows' items, then cut into rows: ~1 us a row); a row left
    unexplained (indices -1: below ``model.explain_min_percentile``) has none."""
    n, k = explanation.index.shape
    explained = explanation.index[:, 0] >= 0 if k else np.zeros(n, dtype=bool)
    index = explanation.index[explained]
    features = np.asarray(route.feature_names, dtype=object)[index].ravel().tolist()
    contributions = explanation.contribution[explained].ravel().tolist()
    items = [
        {"feature": f, "contribution": c} for f, c in zip(features, contributions, strict=True)
    ]
    rows: list[list[dict[str, object]]] = []
    at = 0
    for row_explained in explained.tolist():
        rows.append(items[at : at + k] if row_explained else [])
        at += k if row_explained else 0
    return rows


Inference = InlineInference[list[Row]] | ProcessInference[list[Row]]


def start_inference(
    settings: Settings, routes: dict[str, Route], max_rows: int | None = None
) -> Inference:
    """The executor of ``model.inference`` for the routes' models, for batches of up to
    ``max_rows`` (default ``batch.max_rows``); a worker process has loaded the models when
    this returns."""
    if choose_mode(settings.model.inference) == "inline":
        scorers = {top: r.scorer for top, r in routes.items()}
        return InlineInference(
            scorers, settings.explained_features, settings.model.explain_min_percentile
        )
    models = [
        ModelFile(top, r.path, r.bundle.checksum, len(r.feature_names)) for top, r in routes.items()
    ]
    device = str(next(iter(routes.values())).scorer.device)
    rows = max_rows or settings.batch.max_rows
    threads, explain = settings.model.cpu_threads, settings.explained_features
    return ProcessInference(
        models, device, threads, rows, explain, settings.model.explain_min_percentile
    )
