"""Message bytes -> decoded alerts as columns (:class:`Decoded`), whatever decodes them.

Two paths give the same columns: the layouts of the stream (:mod:`service.io.codecs.layouts`)
run over a batch by a compiled loop (:mod:`service.io.codecs.batchdecode`), and fastavro (or
JSON) record by record, for everything else - another key order, messages the layouts turn down, bad
bytes. Every record the generic path decodes teaches the layouts. Alerts are grouped by the feature
names their records carry (today's names: a survey maps older ones), so that routing and feature
assembly run on whole groups. Rubin alert packets have no layouts: a compiled walk of their
writer schema (:mod:`service.io.codecs.packetdecode`) reads their diaObject in batches, and their
sources when a model uses light-curve features, which are then extracted for the whole batch
(:mod:`models.rubin.lcbatch`; so are those of the packets fastavro decodes).

Over 300 lines on purpose: every message is decoded once, by whichever path takes it first - the
layouts, the packet walks, then the generic decoder - and :class:`MessageDecoder` is where those
paths meet and their outputs become the same columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import structlog
from fastavro import parse_schema
from numpy.typing import NDArray

from service.config import InputSettings
from service.core.validation import check_values, reject
from service.exceptions import InputError
from service.io.codecs.avro import (
    CONFLUENT_HEADER_SIZE,
    confluent_header,
    load_schema,
    make_decoder,
)
from service.io.codecs.batchdecode import BatchDecoder, compile_loop
from service.io.codecs.layouts import Layout, LayoutLearner
from service.io.codecs.packetdecode import PacketDecoder, compile_packet, compile_walk
from service.io.codecs.surveys import Survey, is_packet

log = structlog.get_logger(__name__)


class Alerts(NamedTuple):
    """Decoded alerts whose records carry the same features, as columns."""

    inputs: NDArray[np.intp]  # index of the message each alert came from
    ids: list[str]
    top_names: tuple[str, ...]
    top: NDArray[np.float64]  # (m, top classes): the top-level probabilities
    names: tuple[str, ...]  # the features the records carry, by today's names
    values: NDArray[np.float64]  # (m, features + 1): NaN for null, then a NaN column
    # where lc_classification begins in each message (batch-decoded ones; None: not known)
    heads: NDArray[np.int64] | None = None


@dataclass
class Decoded:
    """The alerts of a batch of messages, and the messages that could not be decoded."""

    groups: list[Alerts] = field(default_factory=list)
    errors: dict[int, InputError] = field(default_factory=dict)
    paths: dict[str, int] = field(default_factory=lambda: {"batch": 0, "generic": 0})


class _Pending(NamedTuple):
    input: int
    oid: str
    top: Mapping[str, Any]
    features: Mapping[str, Any]


class MessageDecoder:
    """Decodes messages of the configured input format and record version."""

    def __init__(
        self,
        settings: InputSettings,
        survey: Survey,
        lightcurves: bool = False,
        wanted: frozenset[str] | None = None,
    ) -> None:
        """``lightcurves``: compute light-curve features of alert packets (a model uses them);
        ``wanted``: the features (today's names) the batch decoder gathers (default: all; the
        generic path decodes every feature a record carries)."""
        self.survey = survey
        self.wanted = wanted
        # light-curve features are extracted for a batch's packets together (_with_lightcurves)
        self._lightcurves = lightcurves and survey.alert_packets
        self._parse_record = survey.parser(False)
        schemas = input_schemas(settings, survey)
        generic_schema = schemas.get(b"")
        confluent = {i: parse_schema(schema) for i, schema in survey.packet_schemas().items()}
        confluent |= {i: load_schema(Path(p)) for i, p in settings.confluent_schemas.items()}
        self._generic = make_decoder(
            settings.format,
            parse_schema(generic_schema) if generic_schema is not None else None,
            confluent if settings.format == "confluent" else None,
            survey.projection(lightcurves),
        )
        self.schemas = schemas
        self.learners: dict[bytes, LayoutLearner] = {}
        for header, schema in schemas.items():
            learner = LayoutLearner.for_schema(schema, survey.id_fields)
            if learner is not None:
                self.learners[header] = learner
        self._batch = {
            h: BatchDecoder(learner, h, self._columns) for h, learner in self.learners.items()
        }
        self._header_size = CONFLUENT_HEADER_SIZE if settings.format == "confluent" else 0
        self._packets = self._packet_decoders(schemas, self._lightcurves)
        if self._batch and settings.decoder == "auto":
            compile_loop()
        if self._packets and settings.decoder == "auto":
            compile_walk()
        self._names: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._gathered: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._generic_note: set[str] = set()
        self.force_generic = settings.decoder == "generic"
        if settings.format in ("container", "json"):
            self._note("format", f"format {settings.format} has no layouts")
        for header in schemas.keys() - self.learners.keys() - self._packets.keys():
            self._note(
                "schema",
                "the input schema is not a classifier record the batch decoder reads",
                schema_id=header.hex() or None,
            )

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode a batch of message values."""
        out = Decoded()
        done = np.zeros(len(values), dtype=bool)
        if self.force_generic:
            self._note("forced", "input.decoder is 'generic'")
        else:
            for header, batch in self._batch.items():
                self._decode_batch(values, header, batch, out, done)
            for header, packets in self._packets.items():
                self._decode_packets(values, header, packets, out, done)
            if not done.all() and (self._batch or self._packets):
                self._note(
                    "layout_mismatch",
                    "messages that fit no learned layout (another key order, values the batch "
                    "decoder does not read, or bad bytes)",
                    messages=int((~done).sum()),
                )
        pending: list[_Pending] = []
        histories: list[tuple[_Pending, Mapping[str, Any]]] = []  # packets and their alerts
        for i in np.flatnonzero(~done).tolist():
            try:
                records = self._generic(values[i])
            except InputError as exc:
                out.errors[i] = exc
                continue
            self._learn(values[i] or b"", records[0])
            try:
                parsed = [self._parse(i, record) for record in records]
            except InputError as exc:
                out.errors[i] = exc
                continue
            pending += parsed
            histories += [(p, r) for p, r in zip(parsed, records, strict=True) if is_packet(r)]
        out.paths["generic"] += len(values) - int(done.sum())
        out.groups += self._groups(self._with_lightcurves(pending, histories), out.errors)
        return out

    def decode_records(self, records: Iterable[Any]) -> Decoded:
        """Decoded records (a table row, an Avro file's records) as the alerts of one input."""
        out = Decoded()
        records = list(records)
        try:
            pending = [self._parse(0, record) for record in records]
        except InputError as exc:
            out.errors[0] = exc
            return out
        if not pending:
            out.errors[0] = reject("empty_input")
            return out
        packets = [(p, r) for p, r in zip(pending, records, strict=True) if is_packet(r)]
        out.groups = self._groups(self._with_lightcurves(pending, packets), out.errors)
        return out

    def canonical(self, names: tuple[str, ...]) -> tuple[str, ...]:
        """Today's names of a record's features (cached per key order)."""
        found = self._names.get(names)
        if found is None:
            found = self._names[names] = tuple(map(self.survey.canonical, names))
        return found

    def _decode_batch(
        self,
        values: Sequence[bytes | None],
        header: bytes,
        batch: BatchDecoder,
        out: Decoded,
        done: NDArray[np.bool_],
    ) -> None:
        size = self._header_size
        index = [i for i, v in enumerate(values) if v and v[:size] == header and not done[i]]
        if not index:
            return
        if not batch.learner.layouts:  # the first message teaches one (generically)
            try:
                self._learn(values[index[0]] or b"", self._generic(values[index[0]] or b"")[0])
            except InputError:
                return
        taken = [values[i] or b"" for i in index]
        for decoded in batch.decode(taken):
            inputs = np.asarray(index, dtype=np.intp)[decoded.inputs]
            done[inputs] = True
            out.paths["batch"] += len(inputs)
            out.groups.append(
                Alerts(
                    inputs,
                    decoded.oids,
                    decoded.layout.top_classes,
                    decoded.top.astype(np.float64),
                    self._gathered_names(decoded.layout.feature_names, decoded.columns),
                    decoded.values,
                    decoded.heads,
                )
            )

    def _packet_decoders(
        self, schemas: Mapping[bytes, Any], history: bool
    ) -> dict[bytes, PacketDecoder]:
        """A compiled walk for each input schema that is a Rubin alert packet (reading its
        sources too with ``history``: a model uses light-curve features)."""
        out = {}
        for header, schema in schemas.items():
            program = compile_packet(schema, self._wanted, history)
            if program is not None:
                out[header] = PacketDecoder(program, self._header_size)
        return out

    def _wanted(self, name: str) -> bool:
        return self.wanted is None or name in self.wanted

    def _decode_packets(
        self,
        values: Sequence[bytes | None],
        header: bytes,
        packets: PacketDecoder,
        out: Decoded,
        done: NDArray[np.bool_],
    ) -> None:
        """The Rubin packets of ``header`` that the compiled walk decodes."""
        size = self._header_size
        index = [i for i, v in enumerate(values) if v and v[:size] == header and not done[i]]
        if not index:
            return
        decoded = packets.decode([values[i] or b"" for i in index])
        if not len(decoded.inputs):
            return
        inputs = np.asarray(index, dtype=np.intp)[decoded.inputs]
        done[inputs] = True
        out.paths["batch"] += len(inputs)
        m = len(inputs)
        empty = np.zeros((m, 0), dtype=np.float64)
        names, table = decoded.names, decoded.values
        if decoded.sources is not None:
            from models.rubin.lcbatch import lightcurve_matrix
            from models.rubin.lightcurves import lightcurve_feature_names

            names += lightcurve_feature_names()
            features = lightcurve_matrix(decoded.sources, m)
            table = np.concatenate([table[:, :-1], features, table[:, -1:]], axis=1)
        out.groups.append(Alerts(inputs, decoded.ids, (), empty, names, table))

    def _columns(self, layout: Layout) -> NDArray[np.intp]:
        """The features of ``layout`` that the batch decoder gathers: the wanted ones."""
        names = self.canonical(layout.feature_names)
        return np.array(
            [j for j, name in enumerate(names) if self.wanted is None or name in self.wanted],
            dtype=np.intp,
        )

    def _gathered_names(self, names: tuple[str, ...], columns: NDArray[np.intp]) -> tuple[str, ...]:
        """Today's names of the gathered columns (cached per layout)."""
        found = self._gathered.get(names)
        if found is None:
            canonical = self.canonical(names)
            found = self._gathered[names] = tuple(canonical[j] for j in columns.tolist())
        return found

    def _note(self, cause: str, why: str, **details: Any) -> None:
        """Say once per cause why messages are decoded generically (fastavro)."""
        if cause not in self._generic_note:
            self._generic_note.add(cause)
            log.info("generic_decoding", cause=cause, why=why, **details)

    def _learn(self, value: bytes, record: Any) -> None:
        learner = self.learners.get(value[: self._header_size])
        if learner is not None and learner.learn(record):
            log.info("decoder_layout_learned", layouts=len(learner.layouts))

    def _with_lightcurves(
        self, pending: list[_Pending], packets: list[tuple[_Pending, Mapping[str, Any]]]
    ) -> list[_Pending]:
        """``pending`` with the light-curve features of its alert packets (extracted together,
        :func:`models.rubin.lcbatch.lightcurve_feature_rows`) when a model uses them."""
        if not self._lightcurves or not packets:
            return pending
        from models.rubin.lcbatch import lightcurve_feature_rows

        rows = lightcurve_feature_rows([record for _, record in packets])
        added = {id(p): row for (p, _), row in zip(packets, rows, strict=True)}
        return [
            p._replace(features={**p.features, **added[id(p)]}) if id(p) in added else p
            for p in pending
        ]

    def _parse(self, index: int, record: Any) -> _Pending:
        alert = self._parse_record(record)
        return _Pending(index, alert.oid, alert.top_probabilities, alert.features)

    def _groups(self, pending: list[_Pending], errors: dict[int, InputError]) -> list[Alerts]:
        """Group generically decoded alerts by their feature and class names, as columns; a
        feature or probability that cannot be a float makes its message an error
        (:func:`service.core.validation.check_values`)."""
        by_names: dict[tuple[tuple[str, ...], tuple[str, ...]], list[_Pending]] = {}
        for alert in pending:
            key = (tuple(alert.features), tuple(alert.top))
            by_names.setdefault(key, []).append(alert)
        groups = []
        for (names, top_names), alerts in by_names.items():
            rows, tops, kept = [], [], []
            for alert in alerts:
                if alert.input in errors:
                    continue
                error = check_values(alert.features, alert.top)
                if error is not None:
                    errors[alert.input] = error
                    continue
                # numpy: None -> NaN, booleans -> 0/1
                rows.append([*alert.features.values(), None])
                tops.append(list(alert.top.values()))
                kept.append(alert)
            if not kept:
                continue
            groups.append(
                Alerts(
                    np.array([a.input for a in kept], dtype=np.intp),
                    [a.oid for a in kept],
                    top_names,
                    np.array(tops, dtype=np.float64).reshape(len(kept), len(top_names)),
                    self.canonical(names),
                    np.array(rows, dtype=np.float64).reshape(len(kept), len(names) + 1),
                )
            )
        return groups


def input_schemas(settings: InputSettings, survey: Survey) -> dict[bytes, dict[str, Any]]:
    """The Avro schemas of the input, by the header their messages start with: ``b""`` for
    schemaless input, the Confluent header of each configured schema id."""
    if settings.format == "schemaless":
        if settings.schema_file is not None:
            return {b"": _read_json(settings.schema_file)}
        return {b"": survey.schema(settings.schema_version)}
    if settings.format == "confluent":
        schemas = {confluent_header(i): s for i, s in survey.packet_schemas().items()}
        return schemas | {
            confluent_header(i): _read_json(Path(p)) for i, p in settings.confluent_schemas.items()
        }
    return {}


def _read_json(path: Path) -> Any:
    load_schema(path)  # a SettingsError naming the file when it is not a schema
    with open(path) as fh:
        return json.load(fh)
