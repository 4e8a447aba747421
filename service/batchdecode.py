"""Layouts (:mod:`service.layouts`) run with numpy over a whole batch of messages.

Per message, matching a layout costs as much as stepping through its ~3 KB one value at a time.
But the messages of one layout differ only in their values, in which features are null and in two
strings (the object id and the predicted class), so the check can be made with array operations
over all messages of a consumed batch at once:

* one Python step per feature (three numpy calls over all messages) reads the feature's union
  branch and moves each message's position past the value;
* every fixed byte of the layout (keys, block counts, union branches, map ends) is compared with
  the layout's own bytes in one gather of unaligned 64-bit words under masks, and each message
  must end exactly where its layout does;
* the numbers are gathered in one go as float64 (floats widened exactly), nulls become NaN -
  those of the features the caller wants (the models' features), whatever the record carries.

A message that does not fit - another layout, an integer feature beyond -64..63, an id or class
string of 64 bytes or more, bytes that are not a record of the schema - is left out, and the
caller decodes it generically (fastavro), which decodes it or reports its error. What this path
accepts it decodes exactly as fastavro does (``tests/unit/test_decoding.py``). A chunk has a
fixed cost of a few hundred microseconds (the per-feature steps), so it pays from a few messages
on (:data:`MIN_BATCH`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from service.layouts import Hole, Layout, LayoutLearner, Lit, Part, Shape, ValueType

MIN_BATCH = 4  # below this many messages fastavro is as fast
CHUNK = 512  # messages decoded at once: 512 beat 256 and 1024 (memory pressure) on this machine
_MAX_SHORT = 63  # strings up to this length have a one-byte length
_LOW32 = np.uint64(0xFFFFFFFF)
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


class _Scratch:
    """Arrays reused from batch to batch: fresh large temporaries would cost more in page
    faults than the work done in them."""

    def __init__(self) -> None:
        self._arrays: dict[str, NDArray[Any]] = {}

    def view(self, name: str, rows: int, n: int, dtype: type) -> NDArray[Any]:
        """A C-contiguous (rows, n) array; its contents are undefined."""
        array = self._arrays.get(name)
        if array is None or array.size < rows * n:
            array = self._arrays[name] = np.empty(rows * max(n, CHUNK), dtype=dtype)
        return array[: rows * n].reshape(rows, n)


def _tables(value_type: ValueType) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """What each first byte of a value of this union is (its branch, zig-zag encoded: 2 x the
    branch index) and how many bytes follow it."""
    kind = np.full(256, _OTHER, dtype=np.uint8)
    size = np.zeros(256, dtype=np.int64)
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


class _Program:
    """One layout compiled to array operations (see the module docstring)."""

    def __init__(
        self, layout: Layout, shape: Shape, header: bytes, columns: NDArray[np.intp]
    ) -> None:
        self.layout = layout
        self.columns = columns
        self.id_is_string = shape.id_is_string
        self.header = _Run.of([Lit(header)])
        head = _runs(layout.head_parts)  # before feature 0, between features, after the last
        self.first, self.between, self.after = head[0], head[1:-1], head[-1]
        [self.tail] = _runs(layout.tail_parts)
        types = layout.feature_types
        tables = {t: _tables(t) for t in set(types)}
        # one kind table for all features (a map's values), or one per feature (a record's)
        self.kind: NDArray[np.uint8] = (
            tables[types[0]][0] if len(tables) == 1 else np.stack([tables[t][0] for t in types])
        )
        # a feature's branch byte to the next feature's branch byte (or the class string)
        nexts = [r.length for r in self.between] + [self.after.length]
        self.steps = [1 + tables[t][1] + n for t, n in zip(types, nexts, strict=True)]
        self.between_lengths = np.array([r.length for r in self.between], dtype=np.intp)[:, None]
        self._scratch = _Scratch()
        runs = [self.header, self.first, *self.between, self.after, self.tail]
        words = [(i, *w) for i, run in enumerate(runs) for w in run.words]
        self.word_run = np.array([w[0] for w in words], dtype=np.intp)
        self.word_offset = np.array([w[1] for w in words], dtype=np.int64)[:, None]
        self.word_expected = np.array([w[2] for w in words], dtype=np.uint64)[:, None]
        self.word_mask = np.array([w[3] for w in words], dtype=np.uint64)[:, None]
        # the most any message can move a position: reads stay inside the padded buffer
        longest = sum(r.length for r in runs) + 9 * len(layout.feature_names)
        self.padding = bytes(longest + 2 * (_MAX_SHORT + 1) + 16)

    def decode(self, values: Sequence[bytes]) -> tuple[DecodedBatch | None, NDArray[np.bool_]]:
        """The decoded messages, and which of ``values`` they are."""
        n = len(values)
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        data = b"".join([*values, self.padding])
        buf = np.frombuffer(data, dtype=np.uint8)
        # every 8 bytes from every offset, as one little-endian word (unaligned, no copy)
        words = np.ndarray((len(buf) - 7,), dtype="<u8", buffer=data, strides=(1,))
        scratch = self._scratch.view
        n_features = len(self.layout.feature_names)

        ok = np.ones(n, dtype=bool)
        id_start = starts + self.header.length
        first = self._read_id(buf, id_start, ok)
        # the features: one step per feature over every message
        branches = scratch("branches", n_features, n, np.uint8)
        branch_at = scratch("branch_at", n_features, n, np.intp)
        position = first + self.first.length
        for j, step in enumerate(self.steps):
            row = branches[j]
            branch_at[j] = position
            np.take(buf, position, out=row)
            position += step[row]
        # where each fixed run starts: the message, after the id, between features, ...
        anchors = scratch("anchors", n_features + 3, n, np.intp)
        anchors[0] = starts
        anchors[1] = first
        np.subtract(branch_at[1:], self.between_lengths, out=anchors[2 : n_features + 1])
        anchors[n_features + 1] = position - self.after.length
        class_end = anchors[n_features + 2]
        class_end[:] = self._skip_class(data, buf, position, ok)
        ok &= class_end + self.tail.length == ends
        # every fixed byte, eight at a time (fancy indexing: np.take would copy ``words``)
        index = scratch("index", len(self.word_run), n, np.intp)
        np.take(anchors, self.word_run, axis=0, out=index)
        index += self.word_offset
        checked = words[index]
        checked &= self.word_mask
        ok &= (checked == self.word_expected).all(axis=0)
        kinds = scratch("kinds", n_features, n, np.uint8)
        if self.kind.ndim == 1:
            np.take(self.kind, branches, out=kinds)
        else:
            kinds[...] = self.kind[np.arange(n_features)[:, None], branches]
        ok &= (kinds != _OTHER).all(axis=0)
        small = kinds >= _BOOLEAN
        others = None  # the byte after the branch of booleans and small integers
        if small.any():
            others = buf[branch_at + 1]
            ok &= ~(small & (others >= np.where(kinds == _BOOLEAN, 2, 0x80))).any(axis=0)
        if not ok.any():
            return None, ok
        top_at = class_end[:, None] + np.array(self.tail.keep, dtype=np.int64)
        top = (words[top_at] & _LOW32).astype(np.uint32).view(np.float32)
        oids = self._oids(values, starts, id_start, first, ok)
        accepted = np.flatnonzero(ok)  # ids that are not UTF-8 were turned down
        if not len(accepted):
            return None, ok
        # (columns, m): the 8 bytes after each wanted feature's branch
        cells = np.ix_(self.columns, accepted)
        raw = np.ascontiguousarray(words[branch_at[cells] + 1])
        taken = kinds[cells]
        width = len(self.columns)
        table = np.empty((len(accepted), width + 1), dtype=np.float64)
        table[:, width] = np.nan
        numbers = table[:, :width].T  # written in place, (columns, m)
        doubles = taken == _F8
        if doubles.all():
            numbers[...] = raw.view("<f8")
        else:  # floats: the low 4 bytes (little-endian), widened exactly (the bytes of nulls,
            # booleans and integers, replaced below, may be signalling NaNs: no warning)
            with np.errstate(invalid="ignore"):
                numbers[...] = raw.view("<f4")[:, ::2]
            if doubles.any():
                np.copyto(numbers, raw.view("<f8"), where=doubles)
        np.copyto(numbers, np.nan, where=taken == _NULL)
        if others is not None:  # booleans and small integers, as fastavro gives them
            which = small[cells]
            byte = others[cells][which].astype(np.int64)
            boolean = taken[which] == _BOOLEAN
            numbers[which] = np.where(boolean, byte, (byte >> 1) ^ -(byte & 1))
        ids = [oids[i] for i in accepted.tolist()]
        return DecodedBatch(self.layout, accepted, ids, top[accepted], self.columns, table), ok

    def _read_id(
        self, buf: NDArray[np.uint8], at: NDArray[np.int64], ok: NDArray[np.bool_]
    ) -> NDArray[np.int64]:
        """Where each message's id ends (strings: a one-byte length, then 1 to 63 bytes; longs:
        a varint of at most 64 bits)."""
        if self.id_is_string:
            header = buf[at].astype(np.int64)
            ok &= (header < 0x80) & (header % 2 == 0) & (header > 0)
            size = np.where(ok, header >> 1, 0)
            return at + 1 + size
        raw = buf[at[:, None] + np.arange(10)]
        last = raw < 0x80
        ok &= last.any(axis=1)
        size = np.argmax(last, axis=1) + 1
        # the 10th byte may add only the 64th bit
        ok &= (size < 10) | (raw[:, 9] <= 1)
        end: NDArray[np.int64] = at + size
        return end

    @staticmethod
    def _skip_class(
        data: bytes, buf: NDArray[np.uint8], at: NDArray[np.int64], ok: NDArray[np.bool_]
    ) -> NDArray[np.int64]:
        """Past the predicted class string (a one-byte length, then UTF-8)."""
        header = buf[at].astype(np.int64)
        ok &= (header < 0x80) & (header % 2 == 0)
        size = np.where(ok, header >> 1, 0)
        longest = int(size.max()) if len(size) else 0
        if longest:
            text = buf[at[:, None] + 1 + np.arange(longest)]
            beyond_ascii = ((text >= 0x80) & (np.arange(longest) < size[:, None])).any(axis=1)
            for i in np.flatnonzero(beyond_ascii & ok).tolist():  # rare: checked one by one
                try:
                    data[at[i] + 1 : at[i] + 1 + size[i]].decode()
                except UnicodeDecodeError:
                    ok[i] = False
        end: NDArray[np.int64] = at + 1 + size
        return end

    def _oids(
        self,
        values: Sequence[bytes],
        starts: NDArray[np.int64],
        id_start: NDArray[np.int64],
        id_end: NDArray[np.int64],
        ok: NDArray[np.bool_],
    ) -> dict[int, str]:
        """The ids of the accepted messages; one that is not UTF-8 is no longer accepted."""
        out: dict[int, str] = {}
        index = np.flatnonzero(ok)
        begins = (id_start - starts)[index].tolist()
        stops = (id_end - starts)[index].tolist()
        for i, begin, stop in zip(index.tolist(), begins, stops, strict=True):
            if not self.id_is_string:
                out[i] = str(_read_varint(values[i], begin))
                continue
            try:
                out[i] = values[i][begin + 1 : stop].decode()
            except UnicodeDecodeError:
                ok[i] = False
        return out


def _read_varint(value: bytes, pos: int) -> int:
    """The zigzag-encoded long at ``pos`` (already checked to be complete and within 64 bits)."""
    result = shift = 0
    while True:
        byte = value[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1)
        pos += 1
        shift += 7


class BatchDecoder:
    """The layouts a :class:`LayoutLearner` has learned, compiled for batches (lazily);
    ``columns(layout)`` names the features to gather (default: all)."""

    def __init__(
        self,
        decoder: LayoutLearner,
        header: bytes,
        columns: Callable[[Layout], NDArray[np.intp]] | None = None,
    ) -> None:
        self.decoder = decoder
        self.header = header
        self.columns = columns or (lambda layout: np.arange(len(layout.feature_names)))
        self._programs: dict[int, _Program] = {}

    def decode(self, values: Sequence[bytes]) -> list[DecodedBatch]:
        """Decode what the learned layouts can; the rest is left to the generic decoder."""
        out: list[DecodedBatch] = []
        for begin in range(0, len(values), CHUNK):
            chunk = values[begin : begin + CHUNK]
            out += [b._replace(inputs=b.inputs + begin) for b in self._decode(chunk)]
        return out

    def _decode(self, values: Sequence[bytes]) -> list[DecodedBatch]:
        out: list[DecodedBatch] = []
        remaining = np.arange(len(values))
        for i, layout in enumerate(self.decoder.layouts):
            program = self._programs.get(i)
            if program is None:
                program = self._programs[i] = _Program(
                    layout, self.decoder.shape, self.header, self.columns(layout)
                )
            subset = [values[j] for j in remaining.tolist()] if i else values
            batch, ok = program.decode(subset)
            if batch is not None:
                out.append(batch._replace(inputs=remaining[batch.inputs]))
            remaining = remaining[~ok]
            if not len(remaining):
                break
        return out
