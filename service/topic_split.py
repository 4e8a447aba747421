"""A topic range replayed across a Dask cluster's workers (``alert-anomaly replay --workers N`` or
``--scheduler ADDRESS``): its pieces, what a worker does with one, and the settings a worker is
sent without their Kafka secrets. Nothing here imports Dask (:mod:`service.commands.replay_cluster`
hands :func:`replay_piece` to the workers).

A piece is an offset range of one Kafka partition. Each partition's range is the one ``replay``
reads (:meth:`TopicRange.bounds`: the explicit start offset, else ``offsets_for_times(since)``,
else the beginning; the explicit end offset, else the end of the partition when it is reached). It
is cut every ``piece_messages`` offsets, the cuts spread between the watermarks seen at planning:
watermarks choose where to cut, never what is read (some brokers answer stale ones). Without an
end offset, a partition's last piece is open: it ends where the partition ends when its worker
reaches it, as in ``replay``. A worker reads its piece with ``replay``'s source (the registry's
``topic_range``, narrowed to the piece's partition and offsets; ``since``/``until`` still checked
message by message) and processor, into :mod:`service.batch`'s layout (its :class:`PartSink` and
its ``_done`` marker), so the pieces' rows together are ``replay``'s rows, lineage included.

The pieces are saved in ``OUT/_pieces.json`` by the first run; a rerun (``--resume``) reuses them,
not the watermarks of its day, so that the markers keep naming the same offsets.

Secrets: the settings sent to a worker have no Kafka secret (the SASL and key passwords, the
secret-named client properties); a worker takes them from its own environment
(``ALERT_ANOMALY_KAFKA__SASL_PASSWORD``, ``..._SSL_KEY_PASSWORD``, ``..._EXTRA``/``_CONSUMER``/
``_PRODUCER`` as JSON). A local cluster's workers get them from the command through their
process environment (:func:`secret_environment`), never through the scheduler.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.exceptions import ConfigurationError, DataError
from service.batch import PartitionResult, PartSink, _join, _mark, _processor, peak_rss_mb
from service.config import KafkaSettings, Settings, is_secret_property
from service.config.base import ENV_PREFIX
from service.io import storage
from service.io.sinks.files import CHECKPOINT
from service.io.storage import Location

PIECE_MESSAGES = 1_000_000  # offsets of a piece, at most (a partition's last piece may be larger)
PIECES = "_pieces.json"
SECRET_FIELDS = ("sasl_password", "ssl_key_password")
PROPERTY_GROUPS = ("extra", "consumer", "producer")

Hole = tuple[str, ...]  # a secret taken out: (field,) or (property group, property)


@dataclass(frozen=True)
class Piece:
    """Offsets ``start``..``end`` (exclusive; None: to the partition's end) of ``partition``."""

    name: str
    partition: int
    start: int
    end: int | None


def split(
    bounds: dict[int, tuple[int, int | None]],
    marks: dict[int, tuple[int, int]] | None,
    piece_messages: int = PIECE_MESSAGES,
) -> list[Piece]:
    """The pieces of partitions read over ``bounds`` (:meth:`TopicRange.bounds`), cut every
    ``piece_messages`` offsets from the low watermark up to the end offset or, without one, the
    high watermark (``marks``: None, no cut but at an end offset)."""
    pieces: list[Piece] = []
    for p, (start, end) in sorted(bounds.items()):
        if start < 0 or (end is not None and end <= start):
            continue  # nothing to read
        low, high = (marks or {}).get(p, (start, start))
        stop = end if end is not None else high
        first = max(start, low)
        cuts = [c for c in range(first + piece_messages, stop, piece_messages) if c > start]
        edges: list[int | None] = [start, *cuts, end]
        for a, b in itertools.pairwise(edges):
            assert a is not None
            name = f"partition-{p}"
            if len(edges) > 2:
                name += f".offsets-{a}-{'end' if b is None else b}"
            pieces.append(Piece(name, p, a, b))
    return pieces


def plan(settings: Settings, piece_messages: int = PIECE_MESSAGES) -> list[Piece]:
    """The pieces of the topic range of ``settings`` (``input.kind`` topic_range), from the
    registry's source of ``replay`` (the broker is asked for partitions, offsets and
    watermarks)."""
    from service.io.sources.topic_range import TopicRange
    from service.ops.availability import Brokers
    from service.ops.metrics import Metrics
    from service.registry import SOURCES, Wiring

    kafka = settings.kafka
    brokers = Brokers(kafka.bootstrap_servers, kafka.unavailable_timeout_s)
    wiring = Wiring(settings, Metrics(), brokers, lambda _: None, "", {})
    source = SOURCES["topic_range"].make(wiring)
    assert isinstance(source, TopicRange)
    try:
        return split(source.bounds(), source.watermarks(), piece_messages)
    finally:
        source.close()


def piece_settings(settings: Settings, piece: Piece) -> Settings:
    """``settings`` narrowed to the piece: its partition, from its start to its end."""
    p = piece.partition
    narrowed = settings.input.model_copy(
        update={
            "partitions": [p],
            "start_offsets": {p: piece.start},
            "end_offsets": {} if piece.end is None else {p: piece.end},
        }
    )
    return settings.model_copy(update={"input": narrowed})


def without_secrets(settings: Settings) -> tuple[Settings, tuple[Hole, ...]]:
    """``settings`` without their Kafka secrets, and where each was (see the module docstring)."""
    kafka = settings.kafka
    holes: list[Hole] = []
    update: dict[str, Any] = {}
    for name in SECRET_FIELDS:
        if getattr(kafka, name) is not None:
            holes.append((name,))
            update[name] = None
    for group in PROPERTY_GROUPS:
        properties: dict[str, str] = getattr(kafka, group)
        secret = [key for key in properties if is_secret_property(key)]
        if secret:
            holes += [(group, key) for key in secret]
            update[group] = {k: v for k, v in properties.items() if k not in secret}
    return settings.model_copy(update={"kafka": kafka.model_copy(update=update)}), tuple(holes)


def _env_name(field: str) -> str:
    return f"{ENV_PREFIX}KAFKA__{field.upper()}"


def secret_environment(settings: Settings, holes: tuple[Hole, ...]) -> dict[str, str]:
    """The environment variables that give a worker the secrets ``holes`` name (a local
    cluster's worker processes are started with them)."""
    env: dict[str, str] = {}
    groups: dict[str, dict[str, str]] = {}
    for hole in holes:
        if len(hole) == 1:
            value = getattr(settings.kafka, hole[0])
            assert isinstance(value, SecretStr)
            env[_env_name(hole[0])] = value.get_secret_value()
        else:
            group, key = hole
            groups.setdefault(group, {})[key] = getattr(settings.kafka, group)[key]
    env.update({_env_name(group): json.dumps(values) for group, values in groups.items()})
    return env


class _WorkerKafka(BaseSettings):
    """The ``kafka`` section of a worker's own environment (``ALERT_ANOMALY_KAFKA__*``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )
    kafka: KafkaSettings = KafkaSettings()


def with_secrets(settings: Settings, holes: tuple[Hole, ...]) -> Settings:
    """``settings`` with the secrets ``holes`` name, from this process's environment; a
    ConfigurationError names a missing one's variable (never a value)."""
    if not holes:
        return settings
    mine = _WorkerKafka().kafka
    update: dict[str, Any] = {}
    for hole in holes:
        group = hole[0]
        if len(hole) == 1:
            value = getattr(mine, group)
        else:
            value = getattr(mine, group).get(hole[1])
            if value is not None:
                value = {**update.get(group, getattr(settings.kafka, group)), hole[1]: value}
        if value is None:
            what = group if len(hole) == 1 else f"{group}[{hole[1]!r}]"
            raise ConfigurationError(
                f"this worker's environment has no kafka.{what}: set {_env_name(group)} "
                "in the environment of the cluster's workers"
            )
        update[group] = value
    return settings.model_copy(update={"kafka": settings.kafka.model_copy(update=update)})


_LOGS: dict[str, tuple[Any, str]] = {}


def replay_piece(
    piece: Piece,
    settings: Settings,
    holes: tuple[Hole, ...],
    out: Location,
    logs: tuple[Any, str] | None = None,
) -> PartitionResult:
    """Replay ``piece`` into its parts in ``out`` and write its marker (runs on a worker;
    ``settings`` without the secrets ``holes`` names; ``logs``: the command's log format and
    level, set up once per worker process)."""
    from service.ops.logs import configure_logging
    from service.pipeline import Pipeline

    if logs is not None and logs != _LOGS.get("set"):
        configure_logging(*logs)
        _LOGS["set"] = logs
    complete = with_secrets(settings, holes)
    # the processor of the whole range's settings: made once per worker, whatever the piece
    pipeline = Pipeline(piece_settings(complete, piece), processor=_processor(settings))
    sink = PartSink(out, piece.name, pipeline.tracker.written)
    started = time.monotonic()
    try:
        summary = pipeline.replay(sink=sink, progress=None)  # the registry's topic_range
    finally:
        sink.close()
    result = PartitionResult(
        piece.name,
        summary.read,
        summary.scored,
        summary.dead_lettered,
        round(time.monotonic() - started, 3),
        round(peak_rss_mb(), 1),
    )
    _mark(out, result)
    return result


def _read(where: Location) -> str | None:
    if isinstance(where, str):
        return storage.read_text(where)
    return where.read_text() if where.is_file() else None


def saved_pieces(out: Location) -> list[Piece] | None:
    """The pieces an earlier run planned into ``out`` (None: none did). A one-process
    replay's output is refused (DataError): its layout is another."""
    if _read(_join(out, CHECKPOINT)) is not None:
        raise DataError(f"{out} holds a one-process replay ({CHECKPOINT}): use another --out")
    text = _read(_join(out, PIECES))
    return None if text is None else [Piece(**piece) for piece in json.loads(text)]


def save_pieces(out: Location, pieces: list[Piece]) -> None:
    """Record the plan in ``out`` (before any piece runs)."""
    data = json.dumps([asdict(p) for p in pieces], indent=0).encode()
    where = _join(out, PIECES)
    if isinstance(where, str):
        storage.put(where, data)
        return
    where.parent.mkdir(parents=True, exist_ok=True)
    temporary = where.with_name(f".{where.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(where)
