"""Rubin alert packets decoded in batches by one compiled walk of their writer schema.

A packet (``lsst.v<M>_<m>.alert``, every version lsst-alert-packet ships) is mostly what the
models do not use: the diaSource histories and three image cutouts. The diaObject's per-band
summaries and its ``diaObjectId`` are all that scoring without light-curve features reads. So the
writer schema is compiled once (:func:`compile_packet`) into a flat program of steps - read or
skip a long, float, double, boolean; skip a string or bytes by its length; pick a union branch;
repeat an array's items block by block - and a loop compiled by numba (:func:`_run`) walks every
message of a batch with it, reading only the gathered diaObject fields and the object id. When a
model uses light-curve features (``history``), it also reads each source's time, band, flux and
error (diaSource, prvDiaSources, prvDiaForcedSources) into flat rows
(:class:`models.rubin.lcbatch.Sources`: the batch's light curves are extracted together); the
rows of a message it turns down are dropped.

Every step checks its bounds against the message's own end, and a message is accepted only if
the walk ends exactly there, every union branch and length is valid, every string is ASCII (so
that it is the UTF-8 fastavro would decode) and every ``timestamp-micros`` long is one fastavro
can make a datetime of. Anything else - a null diaObject, cut or grown bytes, a non-ASCII string,
arrays nested deeper than the loop's stack - is left out, and the caller decodes it generically
(fastavro), which decodes it or makes it a dead letter. What is accepted gives the values the
generic path gives (:func:`models.rubin.diaobject_features`, and the light-curve features of
:func:`models.rubin.lightcurve_features`): floats widened exactly to float64, integers as
float64, NaN for null or non-finite values (``tests/unit/test_packet_decoding.py``).

Over 300 lines on purpose: the schema compiler (``_Compiler``) and the compiled walk (``_run``)
are one contract about the same step codes, their arguments and the source columns; split, a
change to one side would compile against another file's meaning of the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numba
import numpy as np
from numpy.typing import NDArray

from models.exceptions import DataError
from models.rubin.diaobject import band_field
from models.rubin.lcbatch import Sources
from models.rubin.schemas import BANDS
from service.io.codecs.batchdecode import compiled

# steps: (code, a, b, c); a: the output column of a value (-1: none), a union's number of
# branches, a jump's target; b: a long's role, the bytes a _SKIP skips, the primitive of an
# _OPTIONAL; c: the null branch of an _OPTIONAL
_END, _NULL, _BOOLEAN, _LONG, _FLOAT, _DOUBLE, _STRING, _BYTES = 0, 1, 2, 3, 4, 5, 6, 7
_UNION, _BRANCH, _JUMP, _ARRAY, _ARRAY_END, _SKIP, _OPTIONAL = 8, 9, 10, 11, 12, 13, 14
_SOURCE = 15  # a history source begins (a: its rank in _HISTORY): a row of the source columns
# the source columns (a = _SRC + k): time, flux, error (float64), and the band (a string)
_SRC: Final = 1 << 20
_MJD, _FLUX, _ERR, _BAND = 0, 1, 2, 3
# the packet's fields of sources, in photometry()'s reading order, and each source column's
# fields (the first name a record has is read: lightcurves._source_values)
_HISTORY: Final = {"diaSource": 0, "prvDiaSources": 1, "prvDiaForcedSources": 2}
_SOURCE_FIELDS: Final = (
    ("midpointMjdTai", "midPointTai"),
    ("psfFlux", "psFlux"),
    ("psfFluxErr", "psFluxErr"),
    ("band", "filterName"),
)
_BAND_BYTES: Final = np.frombuffer("".join(BANDS).encode(), dtype=np.uint8)
# a long's role (b of a _LONG step)
_PLAIN, _OBJECT_ID, _MICROS = 0, 1, 2
# timestamp-micros values that fastavro turns into a datetime (years 1 to 9999, two days inside)
_MICROS_LOW: Final = -62135596800 * 10**6 + 2 * 86400 * 10**6
_MICROS_HIGH: Final = 253402300799 * 10**6 - 2 * 86400 * 10**6
_STACK: Final = 8  # arrays nested deeper than this are decoded generically
_PRIMITIVE: Final = {
    "null": _NULL,
    "boolean": _BOOLEAN,
    "int": _LONG,
    "long": _LONG,
    "float": _FLOAT,
    "double": _DOUBLE,
    "string": _STRING,
    "bytes": _BYTES,
}
_MIN_SIZE: Final = {_NULL: 0, _BOOLEAN: 1, _LONG: 1, _FLOAT: 4, _DOUBLE: 8, _STRING: 1, _BYTES: 1}


class _UnsupportedError(DataError):
    """A schema this decoder does not walk (the generic path decodes its messages)."""


class _Compiler:
    """Writer schema -> steps; ``columns``: canonical diaObject field -> output column."""

    def __init__(self, columns: Mapping[str, int], history: bool = False) -> None:
        self.columns = columns
        self.history = history  # read the sources' columns
        self.source: int | None = None  # the rank of the source record to come
        self.source_size = 1 << 30  # the fewest bytes of a source
        self.steps: list[list[int]] = []
        self.named: dict[str, Any] = {}
        self.object_id = False

    def emit(self, code: int, a: int = -1, b: int = 0, c: int = 0) -> int:
        """Append a step; a float or double that is not read joins a _SKIP before it (no jump
        lands between them: every jump target follows a branch, jump or array step)."""
        if code in (_FLOAT, _DOUBLE) and a < 0:
            code, b = _SKIP, _MIN_SIZE[code]
            if self.steps and self.steps[-1][0] == _SKIP:
                self.steps[-1][2] += b
                return len(self.steps) - 1
        self.steps.append([code, a, b, c])
        return len(self.steps) - 1

    def resolve(self, name: str, namespace: str) -> Any:
        for full in (name, f"{namespace}.{name}"):
            if full in self.named:
                return self.named[full]
        raise _UnsupportedError(f"unknown named type {name}")

    def type(self, schema: Any, namespace: str, column: int = -1, role: int = _PLAIN) -> int:
        """Emit the steps of one value (``column``: where its value goes; ``role``: of a long);
        its minimum size in bytes."""
        if isinstance(schema, list):
            return self.union(schema, namespace, column, role)
        if isinstance(schema, str) and schema not in _PRIMITIVE:
            schema = self.resolve(schema, namespace)
        kind = schema.get("type") if isinstance(schema, Mapping) else schema
        logical = schema.get("logicalType") if isinstance(schema, Mapping) else None
        if kind in ("record", "array") and (column >= 0 or role != _PLAIN):
            raise _UnsupportedError("a record or an array where a value is read")
        if kind == "record":
            return self.record(schema, namespace)
        if kind == "array":
            return self.array(schema["items"], namespace)
        if not isinstance(kind, str) or kind not in _PRIMITIVE:
            raise _UnsupportedError(f"type {kind}")
        if logical is not None:
            if (kind, logical) != ("long", "timestamp-micros") or role != _PLAIN:
                raise _UnsupportedError(f"logical type {logical}")
            role = _MICROS
        code = _PRIMITIVE[kind]
        if role != _PLAIN and code != _LONG:
            raise _UnsupportedError(f"a {kind} object id")
        _check_source(column, code)
        self.emit(code, column, role)
        return _MIN_SIZE[code]

    def union(self, branches: list[Any], namespace: str, column: int, role: int) -> int:
        if not branches:
            raise _UnsupportedError("an empty union")
        if len(branches) == 2 and "null" in branches and role == _PLAIN:
            other = branches[1 - branches.index("null")]
            if isinstance(other, str) and other in _PRIMITIVE and other != "null":
                code = _PRIMITIVE[other]
                _check_source(column, code)
                self.emit(_OPTIONAL, column, code, branches.index("null"))
                return 1
        self.emit(_UNION, len(branches))
        targets = [self.emit(_BRANCH) for _ in branches]
        jumps, sizes = [], []
        for target, branch in zip(targets, branches, strict=True):
            self.steps[target][1] = len(self.steps)
            sizes.append(self.type(branch, namespace, column, role))
            jumps.append(self.emit(_JUMP))
        for jump in jumps:
            self.steps[jump][1] = len(self.steps)
        return 1 + min(sizes)

    def array(self, items: Any, namespace: str) -> int:
        begin = self.emit(_ARRAY)
        if self.type(items, namespace) < 1:
            raise _UnsupportedError("array items of no bytes")
        self.emit(_ARRAY_END, begin + 1)
        self.steps[begin][1] = len(self.steps)
        return 1

    def record(self, schema: Mapping[str, Any], namespace: str, level: str = "") -> int:
        """A record's fields; ``level``: "alert" (the packet: its diaObject is read), "object"
        (the diaObject: its id and gathered fields are read) or "" (skipped)."""
        namespace = schema.get("namespace", namespace)
        name = schema.get("name", "")
        self.named[name if "." in name else f"{namespace}.{name}"] = schema
        self.named.setdefault(name, schema)
        if level == "" and self.source is not None:
            return self.source_record(schema, namespace)
        size = 0
        for field in schema["fields"]:
            kind, fname = field["type"], field["name"]
            if level == "alert" and fname == "diaObject":
                size += self.object(kind, namespace)
            elif level == "alert" and self.history and fname in _HISTORY:
                self.source = _HISTORY[fname]
                size += self.type(kind, namespace)
                self.source = None
            elif level == "object" and fname == "diaObjectId":
                self.object_id = True
                size += self.type(kind, namespace, role=_OBJECT_ID)
            else:
                canonical = band_field(fname) if level == "object" else None
                column = self.columns.get(canonical, -1) if canonical else -1
                size += self.type(kind, namespace, column)
        return size

    def source_record(self, schema: Mapping[str, Any], namespace: str) -> int:
        """A diaSource or diaForcedSource: a row of its time, flux, error and band."""
        assert self.source is not None
        self.emit(_SOURCE, self.source)
        self.source = None  # the records inside it, if any, are skipped
        names = {field["name"] for field in schema["fields"]}
        read = {}
        for k, spellings in enumerate(_SOURCE_FIELDS):
            found = [n for n in spellings if n in names]
            if found:
                read[found[0]] = _SRC + k
        size = sum(
            self.type(f["type"], namespace, read.get(f["name"], -1)) for f in schema["fields"]
        )
        self.source_size = min(self.source_size, size)
        return size

    def object(self, schema: Any, namespace: str) -> int:
        """The diaObject field: its record, alone or in a union (a null diaObject leaves the
        object id unread: the message is decoded generically)."""
        branches = schema if isinstance(schema, list) else [schema]
        if isinstance(schema, list):
            self.emit(_UNION, len(branches))
        targets = [self.emit(_BRANCH) for _ in branches] if isinstance(schema, list) else [-1]
        jumps, sizes = [], []
        for target, branch in zip(targets, branches, strict=True):
            if target >= 0:
                self.steps[target][1] = len(self.steps)
            record = (
                self.resolve(branch, namespace)
                if isinstance(branch, str) and (branch not in _PRIMITIVE)
                else branch
            )
            if isinstance(record, Mapping) and record.get("type") == "record":
                sizes.append(self.record(record, namespace, "object"))
            else:
                sizes.append(self.type(branch, namespace))
            if target >= 0:
                jumps.append(self.emit(_JUMP))
        for jump in jumps:
            self.steps[jump][1] = len(self.steps)
        return min(sizes) + (1 if isinstance(schema, list) else 0)


def _check_source(column: int, code: int) -> None:
    """A source's band must be a string (or null), its other columns numbers (or null)."""
    if column < _SRC:
        return
    kinds = (_STRING, _NULL) if column == _SRC + _BAND else (_LONG, _FLOAT, _DOUBLE, _NULL)
    if code not in kinds:
        raise _UnsupportedError("a source column of another type")


@dataclass(frozen=True)
class PacketProgram:
    """A packet schema compiled: its steps and the gathered diaObject fields (today's names);
    with ``history``, its sources' columns too (``source_size``: a source's fewest bytes)."""

    steps: NDArray[np.int64]  # (n, 4): code, a, b, c
    names: tuple[str, ...]
    history: bool = False
    source_size: int = 1


def packet_fields(schema: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Today's names of the per-band fields of a packet schema's diaObject, in its order; None
    when ``schema`` is not a Rubin alert packet."""
    fields = schema.get("fields") if isinstance(schema, Mapping) else None
    if not isinstance(fields, list):
        return None
    found = [f for f in fields if isinstance(f, Mapping) and f.get("name") == "diaObject"]
    if not found or not any(f.get("name") == "diaSource" for f in fields):
        return None
    kinds = found[0]["type"] if isinstance(found[0]["type"], list) else [found[0]["type"]]
    for kind in kinds:
        if isinstance(kind, Mapping) and kind.get("type") == "record":
            names = [band_field(f["name"]) for f in kind["fields"]]
            return tuple(n for n in names if n is not None)
    return None


def compile_packet(
    schema: Mapping[str, Any], wanted: Callable[[str], bool] | None = None, history: bool = False
) -> PacketProgram | None:
    """The program of a Rubin alert-packet writer schema, gathering the diaObject's per-band
    fields that ``wanted`` accepts (default: all), and with ``history`` every source's time,
    band, flux and error (:class:`models.rubin.lcbatch.Sources`); None when the schema is not a
    packet this decoder walks (its messages are decoded generically)."""
    names = packet_fields(schema)
    if names is None or len(set(names)) != len(names):
        return None
    gathered = tuple(n for n in names if wanted is None or wanted(n))
    compiler = _Compiler({name: j for j, name in enumerate(gathered)}, history)
    try:
        compiler.record(schema, str(schema.get("namespace", "")), "alert")
    except (_UnsupportedError, KeyError, TypeError):
        return None
    if not compiler.object_id:
        return None
    compiler.emit(_END)
    steps = np.array(compiler.steps, dtype=np.int64).reshape(-1, 4)
    if history and not (steps[:, 0] == _SOURCE).any():
        return None
    return PacketProgram(steps, gathered, history, max(1, min(compiler.source_size, 1 << 20)))


@numba.njit(inline="always")
def _varint(buf, at, end):  # type: ignore[no-untyped-def]
    """(value, position after it) of the zig-zag varint at ``at`` (at most 64 bits), or
    (0, a position past ``end``)."""
    word = np.uint64(0)
    for k in range(min(10, end - at)):
        byte = np.uint64(buf[at + k])
        if k == 9 and byte > 1:
            break
        word |= (byte & np.uint64(0x7F)) << np.uint64(7 * k)
        if byte < 0x80:
            return np.int64(word >> np.uint64(1)) ^ -np.int64(word & np.uint64(1)), at + k + 1
    return np.int64(0), end + 1


@numba.njit(inline="always")
def _bits(buf, at, size):  # type: ignore[no-untyped-def]
    word = np.uint64(0)
    for k in range(size):
        word |= np.uint64(buf[at + k]) << np.uint64(8 * k)
    return word


@numba.njit(inline="always")
def _put(values, src, i, row, a, value):  # type: ignore[no-untyped-def]
    """``value`` into the diaObject column or source column ``a`` (none below 0; a band is
    not a number: it stays unknown)."""
    if a >= _SRC:
        if a < _SRC + _BAND:
            src[row, a - _SRC] = value
    elif a >= 0:
        values[i, a] = value


@compiled
def _run(buf, starts, ends, steps, values, ids, ok, stack, f32, u32, f64, u64, src, band, meta):  # type: ignore[no-untyped-def]
    """Walk every message ``buf[starts[i]:ends[i]]`` with ``steps``; ``ok[i]``: it was read to
    its end exactly, with its object id; then ``ids[i]`` and ``values[i]`` hold what it gave,
    and its sources are rows of ``src`` (time, flux, error), ``band`` (index in BANDS, -1) and
    ``meta`` (message, rank in _HISTORY). The number of rows, or -1 when they do not fit."""
    low, high = _MICROS_LOW, _MICROS_HIGH
    rows, row = 0, 0
    for i in range(len(starts)):
        at, end = starts[i], ends[i]
        pc, depth = 0, 0
        bad, seen = False, False
        first = rows
        while not bad:
            code, a, b = steps[pc, 0], steps[pc, 1], steps[pc, 2]
            if code == _OPTIONAL:  # a union of null and a primitive
                branch, at = _varint(buf, at, end)
                if at > end or branch < 0 or branch > 1:
                    bad = True
                    continue
                if branch == steps[pc, 3]:
                    _put(values, src, i, row, a, np.nan)
                    pc += 1
                    continue
                code, b = b, _PLAIN
            if code == _SKIP:
                at += b
                if at > end:
                    bad = True
                pc += 1
            elif code == _END:
                break
            elif code == _LONG:
                value, at = _varint(buf, at, end)
                if at > end:
                    bad = True
                elif b == _OBJECT_ID:
                    ids[i] = value
                    seen = True
                elif b == _MICROS and (value < low or value > high):
                    bad = True
                _put(values, src, i, row, a, np.float64(value))
                pc += 1
            elif code == _DOUBLE:
                if at + 8 > end:
                    bad = True
                elif a >= 0:
                    u64[0] = _bits(buf, at, 8)
                    _put(values, src, i, row, a, f64[0] if np.isfinite(f64[0]) else np.nan)
                at += 8
                pc += 1
            elif code == _FLOAT:
                if at + 4 > end:
                    bad = True
                elif a >= 0:
                    u32[0] = np.uint32(_bits(buf, at, 4))
                    wide = np.float64(f32[0])
                    _put(values, src, i, row, a, wide if np.isfinite(wide) else np.nan)
                at += 4
                pc += 1
            elif code == _NULL:
                _put(values, src, i, row, a, np.nan)
                pc += 1
            elif code == _UNION:
                branch, at = _varint(buf, at, end)
                if at > end or branch < 0 or branch >= a:
                    bad = True
                else:
                    pc = steps[pc + 1 + branch, 1]
            elif code == _JUMP:
                pc = a
            elif _STRING <= code <= _BYTES:  # a string or bytes
                size, at = _varint(buf, at, end)
                if at > end or size < 0 or size > end - at:
                    bad = True
                else:
                    _put(values, src, i, row, a, np.nan)
                    for k in range(at, at + size if code == _STRING else at):
                        if buf[k] >= 0x80:
                            bad = True
                            break
                    if a == _SRC + _BAND and size == 1:
                        for k in range(len(_BAND_BYTES)):
                            if buf[at] == _BAND_BYTES[k]:
                                band[row] = k
                at += size
                pc += 1
            elif code == _BOOLEAN:
                if at >= end or buf[at] > 1:
                    bad = True
                elif a >= 0:
                    values[i, a] = np.nan
                at += 1
                pc += 1
            elif _ARRAY <= code <= _ARRAY_END:  # an array begins, or an item ends
                if code == _ARRAY_END:
                    stack[depth - 1] -= 1
                    if stack[depth - 1] > 0:
                        pc = a
                        continue
                    depth -= 1
                count, at = _varint(buf, at, end)
                if count < 0:  # a block with its size in bytes
                    count = -count
                    size, at = _varint(buf, at, end)
                    bad = size < 0 or count < 0
                if bad or at > end or count > end - at or (count and depth == _STACK):
                    bad = True
                elif count == 0:
                    pc = steps[pc, 1] if code == _ARRAY else pc + 1
                else:
                    stack[depth] = count
                    depth += 1
                    pc = pc + 1 if code == _ARRAY else a
            elif code == _SOURCE:
                if rows == len(band):
                    return -1
                row = rows
                rows += 1
                src[row, 0] = src[row, 1] = src[row, 2] = np.nan
                band[row] = -1
                meta[row, 0], meta[row, 1] = i, a
                pc += 1
            else:
                bad = True
        ok[i] = not bad and seen and at == end
        if not ok[i]:
            rows = first
    return rows


def compile_walk() -> None:
    """Compile :func:`_run` (or load it from numba's cache) now, with the argument types of
    every later call, rather than when the first batch arrives."""
    f32, f64 = np.zeros(1, dtype=np.float32), np.zeros(1, dtype=np.float64)
    none = np.zeros(0, dtype=np.int64)
    _run(
        np.frombuffer(bytes(1), dtype=np.uint8), none, none, np.zeros((1, 4), dtype=np.int64),
        np.zeros((0, 1), dtype=np.float64), none, np.zeros(0, dtype=np.bool_),
        np.zeros(_STACK, dtype=np.int64), f32, f32.view(np.uint32), f64, f64.view(np.uint64),
        np.zeros((0, 3), dtype=np.float64), np.zeros(0, dtype=np.int8),
        np.zeros((0, 2), dtype=np.int64),
    )  # fmt: skip


@dataclass(frozen=True)
class DecodedPackets:
    """The messages of a batch that the compiled walk decoded."""

    inputs: NDArray[np.intp]  # their positions in the batch
    ids: list[str]  # diaObjectId
    names: tuple[str, ...]  # the gathered diaObject fields (today's names)
    values: NDArray[np.float64]  # (m, names + 1): NaN for null or not finite, then a NaN column
    sources: Sources | None = None  # their sources (packet: the row in values), with history


class PacketDecoder:
    """One packet schema's program, run over batches of its messages (after ``skip`` header
    bytes)."""

    def __init__(self, program: PacketProgram, skip: int = 0) -> None:
        self.program = program
        self.skip = skip
        self._f32, self._f64 = np.zeros(1, dtype=np.float32), np.zeros(1, dtype=np.float64)
        self._stack = np.zeros(_STACK, dtype=np.int64)
        self._rows = 256  # source rows per message to begin with

    def decode(self, values: Sequence[bytes]) -> DecodedPackets:
        """Decode what the walk accepts; the rest is the generic decoder's."""
        n = len(values)
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        starts = ends - lengths + self.skip
        buf = np.frombuffer(b"".join(values) or b"\0", dtype=np.uint8)
        table = np.empty((n, len(self.program.names) + 1), dtype=np.float64)
        table[:, -1] = np.nan
        ids = np.zeros(n, dtype=np.int64)
        ok = np.zeros(n, dtype=np.bool_)
        # source rows: about 256 a message, no more than the bytes allow (every source but a
        # packet's diaSource takes source_size bytes or more); more when they do not fit
        bound = n + int(lengths.sum()) // self.program.source_size
        capacity = min(bound, self._rows * n) if self.program.history else 0
        while True:
            src = np.empty((capacity, 3), dtype=np.float64)
            band = np.empty(capacity, dtype=np.int8)
            meta = np.empty((capacity, 2), dtype=np.int64)
            rows = _run(
                buf, starts, ends, self.program.steps, table, ids, ok,
                self._stack, self._f32, self._f32.view(np.uint32), self._f64,
                self._f64.view(np.uint64), src, band, meta,
            )  # fmt: skip
            if rows >= 0:
                break
            self._rows *= 4
            capacity = 4 * capacity + 1024
        inputs = np.flatnonzero(ok)
        sources = (
            _sources(ok, src[:rows], band[:rows], meta[:rows]) if self.program.history else None
        )
        return DecodedPackets(
            inputs,
            [str(i) for i in ids[inputs].tolist()],
            self.program.names,
            table[inputs],
            sources,
        )


def _sources(
    ok: NDArray[np.bool_], src: NDArray[np.float64], band: NDArray[np.int8], meta: NDArray[np.int64]
) -> Sources:
    """The walk's source rows as :class:`Sources` of the accepted messages, in photometry()'s
    reading order within each (diaSource, prvDiaSources, prvDiaForcedSources)."""
    packet = (np.cumsum(ok) - 1)[meta[:, 0]]
    order = packet * len(_HISTORY) + meta[:, 1]
    if len(order) and (np.diff(order) < 0).any():  # another field order than the schemas'
        keep = np.argsort(order, kind="stable")
        packet, src, band, meta = packet[keep], src[keep], band[keep], meta[keep]
    return Sources(
        packet, src[:, _MJD].copy(), band, src[:, _FLUX].copy(), src[:, _ERR].copy(), meta[:, 1] < 2
    )
