"""ALeRCE's database writes: one *scribe* command per scored object.

ALeRCE's steps do not write to their database; they publish commands that their scribe step
executes (alercebroker/pipeline at 9a728060b; the facts are kept in
``tests/unit/upstream/alerce_scribe.json`` with a drift test):

* the message is the Avro record ``scribe_message`` with one string field, ``payload``: the
  command as JSON (``schemas/scribe_step/scribe.avsc``), written schemaless;
* their anomaly step's ``ScoreScribeParser`` writes, per object, ``{"collection": "score",
  "type": "insert", "criteria": {"_id": <oid>}, "data": {"detector_name", "detector_version",
  "categories": [{"name", "score"}, ...]}, "options": {"upsert": true, "set_on_insert":
  false}}``; the detector name is the model's (``_top`` appended for the top-level scores, ``_``
  + the top class for a top class's subclasses) and the version the model's version;
* their writer needs ``collection``, ``type`` and ``data``; an ``insert`` into ``score`` needs
  a detector name, a version and at least one category, and upserts one row per category keyed by
  (detector, object, version, category) - the same command twice leaves the same row.

Ours: one model scores an object, the one of its most probable top class, so each object gets
one command: detector ``<name>_top``, the bundle's ``model_version``, one category - the routed
top class with the raw anomaly score (the percentile is in the score record). Nothing in a
command depends on when it is made, so a replay writes the same commands (idempotent).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from models.resources import schemas_dir
from service.io.codecs.avrowrite import write_long
from service.records import Columns

SCRIBE_SCHEMA_PATH = Path("alerce-scribe/1/scribe.avsc")

ScribeEncoder = Callable[[Columns, int], list[bytes]]


def score_commands(columns: Columns, n: int, detector_name: str) -> list[dict[str, object]]:
    """The scribe commands of a batch of ``n`` anomaly-score records (given as columns): one
    per object, in the records' order."""
    oids, scores, top_class, version = _values(columns, n)
    name = f"{detector_name}_top"
    return [
        {
            "collection": "score",
            "type": "insert",
            "criteria": {"_id": oid},
            "data": {
                "detector_name": name,
                "detector_version": version,
                "categories": [{"name": top_class, "score": score}],
            },
            "options": {"upsert": True, "set_on_insert": False},
        }
        for oid, score in zip(oids, scores, strict=True)
    ]


def make_scribe_encoder(detector_name: str) -> ScribeEncoder:
    """An encoder of a batch's scribe messages (schemaless Avro of :data:`SCRIBE_SCHEMA_PATH`):
    the bytes of ``json.dumps`` of :func:`score_commands` (as their step writes them; a score
    beyond float32, inf, as ``Infinity``, which their writer's ``json.loads`` reads back), made
    around the two values that change from row to row (the service's hot path)."""
    schema = json.loads((schemas_dir() / SCRIBE_SCHEMA_PATH).read_text())
    assert schema["fields"] == [{"name": "payload", "type": "string"}]  # a length, then UTF-8
    name = f"{detector_name}_top"

    def encode(columns: Columns, n: int) -> list[bytes]:
        oids, scores, top_class, version = _values(columns, n)
        name_, version_, class_ = (  # as %-format text
            _text(text).replace("%", "%%") for text in (name, version, top_class)
        )
        template = (
            _START
            + '%s},"data":{"detector_name":'
            + name_
            + ',"detector_version":'
            + version_
            + ',"categories":[{"name":'
            + class_
            + ',"score":%s}]},"options":{"upsert":true,"set_on_insert":false}}'
        )
        numbers = map(float.__repr__ if all(map(math.isfinite, scores)) else _number, scores)
        payloads = [
            (template % (_text(oid), number)).encode()
            for oid, number in zip(oids, numbers, strict=True)
        ]
        return [_length(len(payload)) + payload for payload in payloads]

    return encode


def _values(columns: Columns, n: int) -> tuple[list[str], list[float], str, str]:
    """What a command is made of, from a batch of ``n`` score records: object ids, scores, and
    the top class and model version (one model per batch)."""
    oids, scores = columns["oid"], columns["score"]
    top_class, version = columns["top_class"], columns["model_version"]
    assert isinstance(oids, list)
    assert isinstance(scores, list)
    assert len(oids) == n
    assert isinstance(top_class, str)
    assert isinstance(version, str)
    return oids, scores, top_class, version


def _length(n: int) -> bytes:
    """An Avro long (a string's length), from a table for the usual ones."""
    return _LENGTHS[n] if n < len(_LENGTHS) else write_long(n)


_LENGTHS = [write_long(n) for n in range(4096)]
_START = '{"collection":"score","type":"insert","criteria":{"_id":'
_text = json.encoder.encode_basestring_ascii  # json.dumps's strings (ensure_ascii)


def _number(value: float) -> str:
    """A float as json.dumps writes it."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)
