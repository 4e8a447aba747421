"""Where a record of ALeRCE's classifier schema has its ``lc_classification``: past the oid
string and the features map (or null), found by a compiled skip over the bytes, bounds-checked
and with the oid compared. ``output.format alerce`` (:mod:`service.io.codecs.alerce_output`)
splices there the inputs the batch decoder did not read (which tells it for the others)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from service.io.codecs.batchdecode import compiled, inlined


def splice_points(values: list[bytes], skips: list[int], oids: list[str]) -> NDArray[np.int64]:
    """Where a record of their schema's ``lc_classification`` begins in each of ``values``
    (after ``skips[i]`` header bytes, the oid string and the features map or null), counted from
    the value's start; -1 where the bytes do not hold that or the oid is not ``oids[i]``. One
    compiled pass over the messages the batch decoder did not read."""
    lengths = np.fromiter(map(len, values), np.int64, len(values))
    stops = np.cumsum(lengths)
    starts = stops - lengths
    encoded = [oid.encode() for oid in oids]
    oid_lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    oid_stops = np.cumsum(oid_lengths)
    buffer = np.frombuffer(b"".join(values), np.uint8)
    names = np.frombuffer(b"".join(encoded), np.uint8)
    begins = starts + np.asarray(skips, np.int64)
    ends = _features_ends(buffer, begins, stops, names, oid_stops - oid_lengths, oid_stops)
    return np.where(ends >= 0, ends - starts, -1)


@inlined
def _long(body: NDArray[np.uint8], p: int, stop: int) -> tuple[int, int]:
    """An Avro long at ``p`` and the position after it; (0, -1) past ``stop``."""
    shift, acc = 0, 0
    while p < stop and shift < 64:
        x = int(body[p])
        p += 1
        acc |= (x & 0x7F) << shift
        if x < 0x80:
            return (acc >> 1) ^ -(acc & 1), p
        shift += 7
    return 0, -1


@inlined
def _features_end(body: NDArray[np.uint8], p: int, stop: int) -> int:
    """Past the oid string at ``p`` and the features map or null that follows it; -1 if the
    bytes up to ``stop`` do not hold that."""
    n, p = _long(body, p, stop)
    if p < 0 or n < 0:
        return -1
    p += n
    branch, p = _long(body, p, stop)
    if p < 0 or branch not in (0, 1):
        return -1
    if branch == 1:  # null
        return int(p)
    while True:
        count, p = _long(body, p, stop)
        if p < 0:
            return -1
        if count == 0:
            return int(p) if p <= stop else -1
        if count < 0:  # a block with its size in bytes
            size, p = _long(body, p, stop)
            if p < 0 or size < 0:
                return -1
            p += size
            continue
        for _ in range(count):
            k, p = _long(body, p, stop)
            if p < 0 or k < 0:
                return -1
            p += k
            kind, p = _long(body, p, stop)
            if p < 0:
                return -1
            if kind == 0:  # boolean
                p += 1
            elif kind == 1:  # float
                p += 4
            elif kind == 3:  # int
                _, p = _long(body, p, stop)
                if p < 0:
                    return -1
            elif kind != 2:  # null
                return -1
            if p > stop:
                return -1


@compiled
def _features_ends(
    body: NDArray[np.uint8],
    starts: NDArray[np.int64],
    stops: NDArray[np.int64],
    oids: NDArray[np.uint8],
    oid_starts: NDArray[np.int64],
    oid_stops: NDArray[np.int64],
) -> NDArray[np.int64]:
    """:func:`_features_end` of each record ``body[starts[i]:stops[i]]`` whose oid is
    ``oids[oid_starts[i]:oid_stops[i]]``; -1 for the others."""
    out = np.full(len(starts), -1, np.int64)
    for i in range(len(starts)):
        p, stop = starts[i], stops[i]
        n, q = _long(body, p, stop)
        size = oid_stops[i] - oid_starts[i]
        if q < 0 or n != size or q + n > stop:
            continue
        same = True
        for j in range(size):
            if body[q + j] != oids[oid_starts[i] + j]:
                same = False
                break
        if same:
            out[i] = _features_end(body, p, stop)
    return out
