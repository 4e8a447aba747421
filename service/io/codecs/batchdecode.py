"""Layouts (:mod:`service.io.codecs.layouts`) run over a batch of messages by one compiled loop.

Generic Avro decoding walks the schema for every value, about 1 us per feature. But the messages
of one layout differ only in their values, in which features are null and in two strings (the
object id and the predicted class), so a message can be read in one pass that compares the rest
with the layout's own bytes. That pass is a loop over bytes, compiled to machine code by numba
(once, then cached on disk): per message it

* compares every fixed byte of the layout (keys, block counts, union branches, map ends) with the
  message, run by run, and requires the message to end exactly where its layout does;
* reads each feature's union branch and value - floats widened exactly to float64, nulls as NaN,
  booleans and integers of one byte (-64..63) as fastavro gives them - keeping those the caller
  wants (the models' features), whatever the record carries; and the 'top' probabilities;
* finds the object id (a string of 1 to 63 bytes, or a long) and the predicted class (a string
  of at most 63 bytes).

A message that does not fit - another layout, an integer feature beyond -64..63, an id or class
string of 64 bytes or more or not UTF-8, bytes that are not a record of the schema - is left out,
and the caller decodes it generically (fastavro), which decodes it or reports its error. What
this path accepts it decodes exactly as fastavro does (``tests/unit/test_decoding.py``).

Over 300 lines on purpose: the compiled loop (``_walk`` and the helpers numba inlines into it)
and the Python that prepares its arguments (the branch codes ``_NULL``... and their tables, the
runs of fixed bytes, ``_Program``) are one contract about the same arrays; split, a change to one
side would compile against a different file's layout of the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numba
import numpy as np
from numpy.typing import NDArray

from service.io.codecs.layouts import (
    MAP_END,
    Hole,
    Layout,
    LayoutLearner,
    Lit,
    Part,
    Shape,
    ValueType,
)

# what a feature's union branch byte is: not decodable here, null, float, double, boolean, int or
# long (only those of one byte here: -64 to 63; longer ones are decoded generically)
_OTHER, _NULL, _F4, _F8, _BOOLEAN, _SMALL_INT = 0, 1, 2, 3, 4, 5
_KIND = {"null": _NULL, "float": _F4, "double": _F8, "boolean": _BOOLEAN, "int": _SMALL_INT}
_KIND["long"] = _SMALL_INT
_SIZE = {"null": 0, "float": 4, "double": 8, "boolean": 1, "int": 1, "long": 1}


class DecodedBatch(NamedTuple):
    """The messages of one layout that decoded."""

    layout: Layout
    inputs: NDArray[np.intp]  # position of each decoded message in the input
    oids: list[str]
    top: NDArray[np.float32]  # (m, top classes) in ``layout.top_classes`` order
    columns: NDArray[np.intp]  # the layout's features gathered (indices into its feature order)
    values: NDArray[np.float64]  # (m, columns + 1): NaN for null, then a NaN column
    heads: NDArray[np.int64]  # where each message's lc_classification begins (its byte offset)


def inlined(function: Callable[..., Any]) -> Callable[..., Any]:
    """A helper of :func:`_walk`, compiled into it."""
    return numba.njit(inline="always")(function)


def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` compiled by numba, its machine code cached under ``NUMBA_CACHE_DIR``, next
    to this file or in the user's cache directory (the first writable); where none can be
    written, compiled once per process."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # no writable cache location
        return numba.njit(nogil=True)(function)


@dataclass(frozen=True)
class _Run:
    """Consecutive fixed parts: their length, the 64-bit words that check their bytes (offset,
    expected value, mask; little-endian) and the offsets of the floats to read."""

    length: int
    words: tuple[tuple[int, int, int], ...]
    keep: tuple[int, ...]

    @classmethod
    def of(cls, parts: Sequence[Part]) -> _Run:
        data, mask, keep = bytearray(), bytearray(), []
        for part in parts:
            if isinstance(part, Lit):
                data += part.data
                mask += b"\xff" * len(part.data)
            elif isinstance(part, Hole):
                if part.keep:
                    keep.append(len(data))
                data += bytes(part.size)
                mask += bytes(part.size)
        words = []
        for offset in range(0, len(data), 8):
            m = int.from_bytes(mask[offset : offset + 8], "little")
            if m:
                words.append((offset, int.from_bytes(data[offset : offset + 8], "little") & m, m))
        return cls(len(data), tuple(words), tuple(keep))


def _tables(value_type: ValueType) -> tuple[list[int], list[int]]:
    """What each first byte of a value of this union is (its branch, zig-zag encoded: 2 x the
    branch index) and how many bytes follow it."""
    kind, size = [_OTHER] * 256, [0] * 256
    for branch, name in enumerate(value_type.kinds):
        kind[branch << 1], size[branch << 1] = _KIND[name], _SIZE[name]
    return kind, size


def _runs(parts: Sequence[Part]) -> list[_Run]:
    """The fixed runs between the features of ``parts`` (one more than there are features)."""
    runs: list[list[Part]] = [[]]
    for part in parts:
        if isinstance(part, Lit | Hole):
            runs[-1].append(part)
        else:
            runs.append([])
    return [_Run.of(r) for r in runs]


# Positions only grow and every step reads at most a run, a value or a short string past
# where it starts, so the loop checks bounds once per step and the buffer ends in padding.
# Indices are made unsigned where the loop is hot: numba then drops its check for negative
# indices, and LLVM turns the byte-by-byte words of _little into single loads.


@inlined
def _little(buf, at, size):  # type: ignore[no-untyped-def]
    """The ``size`` bytes at ``at`` as a little-endian unsigned integer."""
    start = np.uint64(at)
    word = np.uint64(0)
    for k in range(size):
        word |= np.uint64(buf[start + np.uint64(k)]) << np.uint64(8 * k)
    return word


@inlined
def _differ(buf, at, run, words, run_words):  # type: ignore[no-untyped-def]
    """Nonzero unless the bytes at ``at`` are fixed run ``run`` (``words``: offset, expected
    value and mask of each 8-byte word of the runs)."""
    differ = np.uint64(0)
    for w in range(run_words[run], run_words[run + 1]):
        differ |= (_little(buf, np.uint64(at) + words[0, w], 8) & words[2, w]) ^ words[1, w]
    return differ


@inlined
def _long(buf, at, end):  # type: ignore[no-untyped-def]
    """(value, position after it) of the zig-zag varint at ``at`` (at most 64 bits), or
    (0, a position past ``end``)."""
    word = np.uint64(0)
    for k in range(min(10, end - at)):
        byte = np.uint64(buf[np.uint64(at + k)])
        if k == 9 and byte > 1:  # the 10th byte may add only the 64th bit
            break
        word |= (byte & np.uint64(0x7F)) << np.uint64(7 * k)
        if byte < 0x80:
            value = np.int64(word >> np.uint64(1)) ^ -np.int64(word & np.uint64(1))
            return value, at + k + 1
    return np.int64(0), end + 1


@compiled
def _walk(  # type: ignore[no-untyped-def]
    buf,
    starts,
    ends,
    words,
    run_words,
    run_length,
    types,
    kinds,
    sizes,
    column,
    keep,
    id_is_string,
    features_tail,
    accepted,
    heads,
    spans,
    long_ids,
    ascii_class,
    top,
    values,
    value_bits,
    f32,
    u32,
):
    """Decode every message ``buf[starts[i]:ends[i]]`` that fits the layout (runs: header,
    before the first feature, after each feature, then the tail); the accepted ones fill the
    outputs' first rows in order. Returns how many were accepted. ``features_tail``: the bytes
    between the last feature's value and lc_classification (a map's end marker)."""
    last = len(run_length) - 1
    after_features = len(types) + 1  # the run after the last feature
    width = values.shape[1] - 1
    count = 0
    for i in range(len(starts)):
        at, end = starts[i], ends[i]
        differ = _differ(buf, at, 0, words, run_words)
        at += run_length[0]
        if at >= end:
            continue
        id_begin = at
        if id_is_string:  # a one-byte length of 1 to 63 bytes, then the text
            header = buf[np.uint64(at)]
            if header >= 0x80 or header & 1 or header == 0:
                continue
            at += 1 + (header >> 1)
        else:
            long_ids[count], at = _long(buf, at, end)
        if at > end:
            continue
        id_end = at
        differ |= _differ(buf, at, 1, words, run_words)
        at += run_length[1]
        bad = False  # a value this loop does not read
        for j in range(len(types)):
            if at > end or bad:
                break
            branch = buf[np.uint64(at)]
            kind, size = kinds[types[j], branch], sizes[types[j], branch]
            c = column[j]
            if kind == _F8:
                if c >= 0:
                    value_bits[count, c] = _little(buf, at + 1, 8)
            elif kind == _F4:
                if c >= 0:
                    u32[0] = np.uint32(_little(buf, at + 1, 4))
                    values[count, c] = f32[0]
            elif kind == _NULL:
                if c >= 0:
                    values[count, c] = np.nan
            elif kind == _OTHER:
                bad = True
            else:
                byte = np.int64(buf[np.uint64(at + 1)])
                bad = bool(byte >= (2 if kind == _BOOLEAN else 0x80))
                if c >= 0:
                    values[count, c] = byte if kind == _BOOLEAN else (byte >> 1) ^ -(byte & 1)
            at += 1 + size
            differ |= _differ(buf, at, j + 2, words, run_words)
            at += run_length[j + 2]
        if bad or differ or at >= end:
            continue
        head = at - run_length[after_features] + features_tail - starts[i]
        header = buf[np.uint64(at)]  # the predicted class: a one-byte length, then the text
        if header >= 0x80 or header & 1:
            continue
        class_begin = at + 1
        at = class_begin + (header >> 1)
        if at > end or _differ(buf, at, last, words, run_words):
            continue
        if at + run_length[last] != end:
            continue
        ascii = True
        for k in range(class_begin, at):
            if buf[np.uint64(k)] >= 0x80:
                ascii = False
        for k in range(len(keep)):
            top[count, k] = np.uint32(_little(buf, at + keep[k], 4))
        values[count, width] = np.nan
        accepted[count] = i
        heads[count] = head
        spans[count, 0], spans[count, 1] = id_begin, id_end
        spans[count, 2], spans[count, 3] = class_begin, at
        ascii_class[count] = ascii
        count += 1
    return count


def compile_loop() -> None:
    """Compile :func:`_walk` (or load it from the cache) now, with the argument types of every
    later call, rather than when the first batch - and its alerts' latency - arrives."""
    none, two = np.zeros(0, dtype=np.int64), np.zeros(2, dtype=np.int64)
    table = np.zeros((0, 1), dtype=np.float64)
    f32 = np.zeros(1, dtype=np.float32)
    _walk(
        np.frombuffer(bytes(1), dtype=np.uint8), none, none,  # read-only, as message bytes are
        np.zeros((3, 0), dtype=np.uint64), two, two,
        none, np.zeros((1, 256), dtype=np.uint8), np.zeros((1, 256), dtype=np.int64), none, none,
        True, 0, np.zeros(0, dtype=np.intp), none,
        np.zeros((0, 4), dtype=np.int64), none,
        np.zeros(0, dtype=np.bool_), np.zeros((0, 0), dtype=np.uint32), table,
        table.view(np.uint64), f32, f32.view(np.uint32),
    )  # fmt: skip


class _Program:
    """One layout compiled to the tables of :func:`_walk`."""

    def __init__(
        self, layout: Layout, shape: Shape, header: bytes, columns: NDArray[np.intp]
    ) -> None:
        self.layout = layout
        self.columns = columns
        self.id_is_string = shape.id_is_string
        self.features_tail = 0 if shape.record_fields is not None else len(MAP_END)
        runs = [_Run.of([Lit(header)]), *_runs(layout.head_parts), *_runs(layout.tail_parts)]
        found = [(offset, *w) for run in runs for offset, *w in run.words]
        self.words = np.array(found, dtype=np.uint64).reshape(-1, 3).T.copy()
        self.run_words = np.cumsum([0, *(len(r.words) for r in runs)], dtype=np.int64)
        self.run_length = np.array([r.length for r in runs], dtype=np.int64)
        # what a step may read past the end of the last message: a run (in words), a value
        # or a string of up to 64 bytes
        self.padding = bytes(int(self.run_length.max()) + 80)
        self.keep = np.array(runs[-1].keep, dtype=np.int64)
        kinds = sorted(set(layout.feature_types))
        tables = [_tables(t) for t in kinds]
        self.kinds = np.array([k for k, _ in tables], dtype=np.uint8).reshape(-1, 256)
        self.sizes = np.array([s for _, s in tables], dtype=np.int64).reshape(-1, 256)
        self.types = np.array([kinds.index(t) for t in layout.feature_types], dtype=np.int64)
        self.column = np.full(len(self.types), -1, dtype=np.int64)
        self.column[columns] = np.arange(len(columns))
        self._f32 = np.zeros(1, dtype=np.float32)

    def decode(self, values: Sequence[bytes]) -> tuple[DecodedBatch | None, NDArray[np.bool_]]:
        """The decoded messages, and which of ``values`` they are."""
        n = len(values)
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        data = b"".join([*values, self.padding])
        accepted = np.empty(n, dtype=np.intp)
        heads = np.empty(n, dtype=np.int64)
        spans = np.empty((n, 4), dtype=np.int64)  # id begin, end; class begin, end
        long_ids = np.empty(n, dtype=np.int64)
        ascii_class = np.empty(n, dtype=np.bool_)
        top = np.empty((n, len(self.keep)), dtype=np.uint32)
        table = np.empty((n, len(self.columns) + 1), dtype=np.float64)
        m = _walk(
            np.frombuffer(data, dtype=np.uint8), ends - lengths, ends,
            self.words, self.run_words, self.run_length,
            self.types, self.kinds, self.sizes, self.column, self.keep, self.id_is_string,
            self.features_tail, accepted, heads, spans, long_ids, ascii_class, top, table,
            table.view(np.uint64), self._f32, self._f32.view(np.uint32),
        )  # fmt: skip
        oids = self._oids(data, spans[:m], long_ids[:m])
        good = np.array([oid is not None for oid in oids], dtype=bool)
        for r in np.flatnonzero(~ascii_class[:m]).tolist():  # rare: checked one by one
            begin, end = spans[r, 2:].tolist()
            try:
                data[begin:end].decode()
            except UnicodeDecodeError:
                good[r] = False
        chosen: slice | NDArray[np.intp] = slice(0, m) if good.all() else np.flatnonzero(good)
        ok = np.zeros(n, dtype=bool)
        ok[accepted[chosen]] = True
        if not ok.any():
            return None, ok
        ids = [oid for oid in oids if oid is not None]
        top_floats = top[chosen].view(np.float32)
        batch = DecodedBatch(
            self.layout,
            accepted[chosen],
            ids,
            top_floats,
            self.columns,
            table[chosen],
            heads[chosen],
        )
        return batch, ok

    def _oids(
        self, data: bytes, spans: NDArray[np.int64], long_ids: NDArray[np.int64]
    ) -> list[str | None]:
        """The ids of the accepted messages (None: not UTF-8)."""
        if not self.id_is_string:
            return [str(i) for i in long_ids.tolist()]
        bounds = spans[:, :2].tolist()
        try:
            return [data[begin + 1 : end].decode() for begin, end in bounds]
        except UnicodeDecodeError:
            pass
        out: list[str | None] = []
        for begin, end in bounds:
            try:
                out.append(data[begin + 1 : end].decode())
            except UnicodeDecodeError:
                out.append(None)
        return out


class BatchDecoder:
    """The layouts a :class:`LayoutLearner` has learned, compiled for batches (lazily);
    ``columns(layout)`` names the features to gather (default: all)."""

    def __init__(
        self,
        learner: LayoutLearner,
        header: bytes,
        columns: Callable[[Layout], NDArray[np.intp]] | None = None,
    ) -> None:
        self.learner = learner
        self.header = header
        self.columns = columns or (lambda layout: np.arange(len(layout.feature_names)))
        self._programs: dict[int, _Program] = {}

    def decode(self, values: Sequence[bytes]) -> list[DecodedBatch]:
        """Decode what the learned layouts can; the rest is left to the generic decoder."""
        out: list[DecodedBatch] = []
        remaining = np.arange(len(values))
        for i, layout in enumerate(self.learner.layouts):
            program = self._programs.get(i)
            if program is None:
                program = self._programs[i] = _Program(
                    layout, self.learner.shape, self.header, self.columns(layout)
                )
            subset = [values[j] for j in remaining.tolist()] if i else values
            batch, ok = program.decode(subset)
            if batch is not None:
                out.append(batch._replace(inputs=remaining[batch.inputs]))
            remaining = remaining[~ok]
            if not len(remaining):
                break
        return out
