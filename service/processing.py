"""Decoding, routing and scoring of alerts, without I/O: the one code path shared by the live
service (``service.pipeline``), replays and offline scoring (``service.replay``).

A message (or a file, or a table row) becomes :class:`Row` s - one per record, routed to the
top-level class with the highest probability and holding the float32 features in that class's
bundle order - and a batch of rows of one class becomes anomaly-score records
(``schemas/anomaly-score/1.0``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import structlog
import torch
from fastavro import parse_schema
from numpy.typing import NDArray

from models.bundle import Bundle, bundle_dirname, load_bundle
from models.exceptions import BundleError
from models.scoring import Scorer, resolve_device
from models.taxonomy import TOP_CLASSES
from service import __version__
from service.batchdecode import MIN_BATCH, BatchDecoder, DecodedBatch
from service.codec import (
    CONFLUENT_HEADER_SIZE,
    Columns,
    Decoder,
    confluent_header,
    load_schema,
    make_decoder,
    records_of,
)
from service.config import Settings
from service.exceptions import InputError, SettingsError
from service.fastdecode import TemplateDecoder
from service.inference import InlineInference, ModelFile, ProcessInference, choose_mode
from service.surveys import FeatureAssembler, Survey, get_survey, route

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Route:
    """The model of one top-level class."""

    top_class: str
    scorer: Scorer
    assembler: FeatureAssembler
    path: Path  # the bundle directory

    @property
    def bundle(self) -> Bundle:
        return self.scorer.bundle


class Source(NamedTuple):  # a named tuple: one is made per message, and cheaply
    """Where an input came from: a topic position, or a file (``file:<name>``, partition 0,
    offset = record index)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None


class Row(NamedTuple):
    """One routed alert, ready for a micro-batch."""

    source: Source
    oid: str
    top_probability: float
    features: NDArray[np.float32]


@dataclass(frozen=True)
class ScoredBatch:
    columns: Columns  # the anomaly-score records by field, in row order
    raw: NDArray[np.float32]
    percentile: NDArray[np.float32]
    seconds: float  # inference time

    @property
    def records(self) -> list[dict[str, Any]]:
        """The anomaly-score records, one per row."""
        return records_of(self.columns, len(self.raw))


HEADER_PREFIX = "alert_anomaly."
Headers = list[tuple[str, str | bytes | None]]


def dead_letter_headers(
    source: Source, error: InputError, original: Headers | dict[str, Any] | None = None
) -> Headers:
    """Headers of a dead letter: the reason, the error, the lineage, the service version, then
    the original message's own headers."""
    headers: Headers = [
        (f"{HEADER_PREFIX}error", error.reason.encode()),
        (f"{HEADER_PREFIX}error_message", str(error).encode()),
        (f"{HEADER_PREFIX}source_topic", source.topic.encode()),
        (f"{HEADER_PREFIX}source_partition", str(source.partition).encode()),
        (f"{HEADER_PREFIX}source_offset", str(source.offset).encode()),
        (f"{HEADER_PREFIX}source_timestamp", str(source.timestamp_ms or "").encode()),
        (f"{HEADER_PREFIX}service_version", __version__.encode()),
    ]
    if isinstance(original, dict):
        return headers + list(original.items())
    return headers + list(original or [])


def load_routes(settings: Settings, device: torch.device) -> dict[str, Route]:
    """Load and verify the bundle of every configured top-level class."""
    routes: dict[str, Route] = {}
    survey = settings.model.survey
    for top, scorer_kind in settings.model.scorers.items():
        if top not in TOP_CLASSES:
            raise SettingsError(f"model.scorers: unknown top-level class {top!r}")
        path = settings.model.bundles_dir / bundle_dirname(survey, top, scorer_kind)
        try:
            bundle = load_bundle(path)
        except BundleError as exc:
            raise SettingsError(f"model for {survey}/{top} ({scorer_kind}): {exc}") from exc
        if (bundle.manifest.survey, bundle.manifest.top_class) != (survey, top):
            raise SettingsError(
                f"{path} is a {bundle.manifest.survey}/{bundle.manifest.top_class} bundle"
            )
        routes[top] = Route(
            top, Scorer(bundle, device), FeatureAssembler(bundle.feature_names), path
        )
    if not routes:
        raise SettingsError("model.scorers is empty: nothing could be scored")
    return routes


def build_decoder(settings: Settings, survey: Survey) -> Decoder:
    """The decoder of the configured input format (the survey's schema by default)."""
    schema_file = settings.input.schema_file
    schema = load_schema(schema_file) if schema_file else None
    if schema is None and settings.input.format == "schemaless":
        schema = parse_schema(survey.schema)
    confluent = {i: load_schema(Path(p)) for i, p in settings.input.confluent_schemas.items()}
    return make_decoder(settings.input.format, schema, confluent)


def build_fast_decoders(settings: Settings, survey: Survey) -> dict[bytes, TemplateDecoder]:
    """The specialised decoders, by the header their messages start with: ``b""`` for
    schemaless input, the Confluent header (magic byte and schema id) of each configured schema
    id; only for schemas that are classifier records."""
    if settings.input.format == "schemaless":
        path = settings.input.schema_file
        schemas = {b"": _read_json(path) if path is not None else survey.schema}
    elif settings.input.format == "confluent":
        schemas = {
            confluent_header(i): _read_json(Path(p))
            for i, p in settings.input.confluent_schemas.items()
        }
    else:
        return {}
    decoders = {h: TemplateDecoder.for_schema(s, survey.id_field) for h, s in schemas.items()}
    return {header: d for header, d in decoders.items() if d is not None}


def _read_json(path: Path) -> Any:
    with open(path) as fh:  # readable: build_decoder loaded it
        return json.load(fh)


class AlertProcessor:
    """Everything between message bytes and anomaly-score records."""

    def __init__(self, settings: Settings) -> None:
        self.survey = get_survey(settings.model.survey)
        # One thread by default: inference is a small share of the time per alert, and idle
        # OpenMP workers spin on the cores that the decoding and librdkafka need.
        torch.set_num_threads(settings.model.cpu_threads)
        self.device = resolve_device(settings.model.device)
        self.routes = load_routes(settings, self.device)
        self.decode = build_decoder(settings, self.survey)
        self.fast = build_fast_decoders(settings, self.survey)
        self.batch = {header: BatchDecoder(d, header) for header, d in self.fast.items()}
        self._header_size = CONFLUENT_HEADER_SIZE if settings.input.format == "confluent" else 0
        self._paths = {"batch": 0, "fast": 0, "generic": 0}

    def decode_paths(self) -> dict[str, int]:
        """How many messages each decoder path handled: ``batch`` (``service.batchdecode``),
        ``fast`` (``service.fastdecode``) or ``generic`` (fastavro)."""
        return dict(self._paths)

    def rows_many(
        self, values: Sequence[bytes | None], sources: Sequence[Source]
    ) -> list[list[tuple[str, Row]] | InputError]:
        """:meth:`rows` of each message (or its InputError), the same rows whichever path
        decodes them: batches of the learned layouts are decoded together with numpy, every
        other message one by one."""
        results: list[list[tuple[str, Row]] | InputError | None] = [None] * len(values)
        if len(values) >= MIN_BATCH:
            size = self._header_size
            for header, decoder in self.batch.items():
                index = [i for i, v in enumerate(values) if v and v[:size] == header]
                if index and not decoder.decoder.layouts:  # the first message teaches one
                    results[index[0]] = self._rows_or_error(values[index[0]], sources[index[0]])
                    index = index[1:]
                taken = [values[i] or b"" for i in index]
                for decoded in decoder.decode(taken):
                    self._route_decoded(decoded, index, sources, results)
        return [
            self._rows_or_error(values[i], sources[i]) if result is None else result
            for i, result in enumerate(results)
        ]

    def _rows_or_error(
        self, value: bytes | None, source: Source
    ) -> list[tuple[str, Row]] | InputError:
        try:
            return self.rows(value, source)
        except InputError as exc:
            return exc

    def _route_decoded(
        self,
        decoded: DecodedBatch,
        index: list[int],
        sources: Sequence[Source],
        results: list[list[tuple[str, Row]] | InputError | None],
    ) -> None:
        """Route and assemble a decoded batch as :meth:`rows` would; messages it would reject
        (non-finite probabilities or features, a class without a model) are left for it."""
        top = decoded.top
        best = np.argmax(top, axis=1)
        finite = np.isfinite(top).all(axis=1)
        for k, name in enumerate(decoded.layout.top_classes):
            target = self.routes.get(name)
            if target is None:
                continue
            chosen = np.flatnonzero(finite & (best == k))
            if not len(chosen):
                continue
            positions = decoded.layout.positions(target.assembler.feature_names)
            features = decoded.values[np.ix_(chosen, positions)].astype(np.float32, copy=False)
            usable = np.flatnonzero(~np.isinf(features).any(axis=1))
            probabilities = top[chosen, k].tolist()
            inputs = decoded.inputs[chosen].tolist()
            oids = decoded.oids
            for j in usable.tolist():
                at = index[inputs[j]]
                row = Row(sources[at], oids[chosen[j]], probabilities[j], features[j])
                results[at] = [(name, row)]
            self._paths["batch"] += len(usable)

    def rows(self, value: bytes | None, source: Source) -> list[tuple[str, Row]]:
        """Decode a message and route its records (all or nothing: InputError).

        The specialised decoder takes the messages it can; every other message, and every
        error, goes through the generic decoder, whose records teach the specialised one."""
        value = value or b""
        fast = self.fast.get(value[: self._header_size])
        if fast is not None:
            record = fast.decode(value, self._header_size)
            if record is not None:
                top, probability = route(record.top_probabilities)
                target = self._target(top)
                features = record.row(target.assembler.feature_names)
                if features is not None:
                    self._paths["fast"] += 1
                    return [(top, Row(source, record.oid, probability, features))]
        self._paths["generic"] += 1
        records = self.decode(value)
        rows = self.rows_from_records(records, source)
        if fast is not None and fast.learn(records[0]):
            log.info("decoder_layout_learned", layouts=len(fast.layouts))
        return rows

    def rows_from_records(self, records: Iterable[Any], source: Source) -> list[tuple[str, Row]]:
        """Parse and route decoded records; returns (top-level class, row) pairs."""
        rows = []
        for record in records:
            alert = self.survey.parse(record)
            top, probability = route(alert.top_probabilities)
            target = self._target(top)
            features = target.assembler.row(alert.features)
            rows.append((top, Row(source, alert.oid, probability, features)))
        return rows

    def _target(self, top: str) -> Route:
        target = self.routes.get(top)
        if target is None:
            raise InputError(
                "unknown_class",
                f"most probable top-level class {top!r} has no model "
                f"(models: {', '.join(self.routes)})",
            )
        return target

    def score(self, top: str, rows: list[Row]) -> ScoredBatch:
        """Score a batch of rows of one class here and now; one anomaly-score record per row."""
        started = time.perf_counter()
        scores = self.routes[top].scorer.score(np.stack([r.features for r in rows]))
        seconds = time.perf_counter() - started
        return self.scored_batch(
            top, rows, scores.raw, scores.percentile, scores.nearest_index, seconds
        )

    def scored_batch(
        self,
        top: str,
        rows: list[Row],
        raw: NDArray[np.float32],
        percentile: NDArray[np.float32],
        nearest: NDArray[np.int64],
        seconds: float,
    ) -> ScoredBatch:
        """The anomaly-score records of scored rows (``nearest``: index of the nearest centre)."""
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
        }
        return ScoredBatch(columns, raw, percentile, seconds)


Inference = InlineInference[list[Row]] | ProcessInference[list[Row]]


def start_inference(
    settings: Settings, routes: dict[str, Route], max_rows: int | None = None
) -> Inference:
    """The executor of ``model.inference`` for the routes' models, for batches of up to
    ``max_rows`` (default ``batch.max_rows``); a worker process has loaded the models when
    this returns."""
    if choose_mode(settings.model.inference) == "inline":
        return InlineInference({top: r.scorer for top, r in routes.items()})
    models = [
        ModelFile(top, r.path, r.bundle.checksum, len(r.assembler.feature_names))
        for top, r in routes.items()
    ]
    device = str(next(iter(routes.values())).scorer.device)
    rows = max_rows or settings.batch.max_rows
    return ProcessInference(models, device, settings.model.cpu_threads, rows)
