"""A decoder specialised to the surveys' classifier-record schema (``schemas/*-lc-classifier``).

Generic Avro decoding (fastavro) walks the schema for every value: about 1 us per feature, so
~150 us for one ALeRCE record with ~150 features - most of the service's time per alert. But a
producer writes its features in one fixed order, so every message of a stream has the same byte
layout except for the values and for which features are null. A :class:`Layout`, learned from a
message the generic decoder has decoded, is that key order compiled into regular expressions
(run by ``re``'s C engine) that match exactly the Avro encodings with those keys in that order;
the floating-point features (float or double: one pattern for each, as a writer uses one type)
are then read straight from the matched bytes with numpy, nulls become NaN, and the few boolean
or integer features are converted one by one.

Anything else (another key order, floats and doubles mixed, a map written in several blocks, a
null feature map, bad UTF-8, trailing bytes, ...) does not match, and the caller falls back to
the generic decoder: what the fast path accepts it decodes exactly like fastavro, and it accepts
nothing fastavro would reject. ``tests/unit/test_fastdecode.py`` checks this on every sample and on
fuzzed inputs.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from service.codec import write_long

MAX_LAYOUTS = 8  # distinct key orders kept (a stream has one; more would be unusual)
_NAN = {"<f4": struct.pack("<f", math.nan), "<f8": struct.pack("<d", math.nan)}
_MAX_VARINT_BYTES = 10  # a 64-bit long


def _read_long(buffer: bytes, pos: int) -> tuple[int, int] | None:
    """(value, next position) of the Avro long at ``pos``; None if truncated or too long."""
    if pos < len(buffer) and buffer[pos] < 0x80:  # one byte: short strings, small numbers
        byte = buffer[pos]
        return (byte >> 1) ^ -(byte & 1), pos + 1
    result = shift = 0
    for i in range(pos, min(len(buffer), pos + _MAX_VARINT_BYTES)):
        byte = buffer[i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result >> 64:
                return None  # beyond 64 bits: left to the generic decoder
            return (result >> 1) ^ -(result & 1), i + 1
        shift += 7
    return None


def _string(text: str) -> bytes:
    data = text.encode()
    return write_long(len(data)) + data


def _lit(data: bytes) -> bytes:
    return re.escape(data)


@dataclass(frozen=True)
class Shape:
    """Union branch indices of a classifier-record schema (the parts the layouts need)."""

    id_is_string: bool
    features_map: int  # branch of the map in the 'features' union
    feature_numbers: tuple[tuple[int, str], ...]  # (branch, numpy dtype) of float and double
    feature_null: int  # branch of null in the feature values' union
    feature_others: tuple[tuple[int, str], ...]  # (branch, type) of boolean, int and long
    flat: int  # branches of the 'hierarchical' values' union: map<float> ...
    nested: int  # ... and map<map<float>>
    probability_branch: bytes = b""  # before each probability when its type is ["float"]

    @classmethod
    def of(cls, schema: Mapping[str, Any], id_field: str) -> Shape | None:
        """The shape of ``schema``, or None when it is not a classifier record as expected."""
        try:
            names = [f["name"] for f in schema["fields"]]
            if schema["type"] != "record" or names != [id_field, "features", "lc_classification"]:
                return None
            id_type, features, classification = (f["type"] for f in schema["fields"])
            maps = [i for i, t in enumerate(features) if _kind(t).startswith("map<")]
            values = [_kind(t) for t in features[maps[0]]["values"]]
            parts = {f["name"]: f["type"] for f in classification["fields"]}
            hierarchical = [_kind(t) for t in parts["hierarchical"]["values"]]
            if (
                id_type not in ("string", "long")
                or len(maps) != 1
                or list(parts) != ["probabilities", "class", "hierarchical"]
                or parts["probabilities"].get("values") not in ("float", ["float"])
                or parts["class"] != "string"
                or not {"float", "double"} & set(values)
            ):
                return None
            return cls(
                id_is_string=id_type == "string",
                features_map=maps[0],
                feature_numbers=tuple(
                    (values.index(kind), dtype)
                    for kind, dtype in (("float", "<f4"), ("double", "<f8"))
                    if kind in values
                ),
                feature_null=values.index("null"),
                feature_others=tuple(
                    (i, kind) for i, kind in enumerate(values) if kind in ("boolean", "int", "long")
                ),
                flat=hierarchical.index("map<float>"),
                nested=hierarchical.index("map<map<float>>"),
                probability_branch=b"" if parts["probabilities"]["values"] == "float" else b"\x00",
            )
        except (KeyError, TypeError, ValueError, IndexError):
            return None


def _kind(avro_type: Any) -> str:
    """A short name of an Avro type, enough to recognise the classifier record's parts."""
    if isinstance(avro_type, str):
        return avro_type
    if isinstance(avro_type, dict) and avro_type.get("type") == "map":
        return f"map<{_kind(avro_type['values'])}>"
    if isinstance(avro_type, dict):
        return str(avro_type.get("type"))
    return "union"


class Lit(NamedTuple):
    """Bytes every message of a layout has at this place."""

    data: bytes


class Hole(NamedTuple):
    """A float of the classifier part: read (the 'top' probabilities) or skipped."""

    size: int
    keep: bool


class _Feature(NamedTuple):
    """A feature's value: the union branch, then a number, nothing (null) or another value."""


FEATURE = _Feature()
Part = Lit | Hole | _Feature


@dataclass(frozen=True)
class Layout:
    """One key order of the classifier record: the message described as parts - the features
    and probabilities (``head``), the predicted class string (between them, read separately),
    the hierarchical probabilities (``tail``) - and compiled to regular expressions."""

    feature_names: tuple[str, ...]
    top_classes: tuple[str, ...]
    head_parts: tuple[Part, ...]
    tail_parts: tuple[Part, ...]
    # features union + map, then the probabilities map: one pattern per number type of the
    # features (a writer uses one), with its numpy dtype
    heads: tuple[tuple[re.Pattern[bytes], str], ...]
    tail: re.Pattern[bytes]  # the hierarchical map, to the end of the message
    _positions: dict[tuple[str, ...], NDArray[np.intp]] = field(default_factory=dict)

    def match_head(self, value: bytes, pos: int) -> tuple[re.Match[bytes], str] | None:
        for head, dtype in self.heads:
            matched = head.match(value, pos)
            if matched is not None:
                return matched, dtype
        return None

    def positions(self, names: tuple[str, ...]) -> NDArray[np.intp]:
        """Index of each of ``names`` in this layout's values (missing: the trailing NaN)."""
        found = self._positions.get(names)
        if found is None:
            index = {name: i for i, name in enumerate(self.feature_names)}
            missing = len(self.feature_names)
            found = np.array([index.get(n, missing) for n in names], dtype=np.intp)
            self._positions[names] = found
        return found


class FastRecord(NamedTuple):
    """What routing and assembling need from one message decoded on the fast path."""

    oid: str
    top_probabilities: dict[str, float]
    layout: Layout
    values: NDArray[np.floating[Any]]  # features in layout order, NaN for null, then one NaN

    def row(self, names: tuple[str, ...]) -> NDArray[np.float32] | None:
        """The features ``names`` as a float32 row; None if one is infinite (the generic path
        reports that error)."""
        row = self.values[self.layout.positions(names)].astype(np.float32, copy=False)
        return None if np.isinf(row).any() else row


class TemplateDecoder:
    """Decodes classifier records of the layouts it has learned; None for anything else."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self._other_kinds = dict(shape.feature_others)
        self.layouts: list[Layout] = []
        self._known: set[tuple[Any, ...]] = set()

    @classmethod
    def for_schema(cls, schema: Mapping[str, Any], id_field: str) -> TemplateDecoder | None:
        shape = Shape.of(schema, id_field)
        return cls(shape) if shape is not None else None

    def decode(self, value: bytes, start: int = 0) -> FastRecord | None:
        """The record that starts at ``start`` (after a wire-format header) and ends with
        ``value``; None when no learned layout matches exactly."""
        if not self.layouts:
            return None
        read = self._read_id(value, start)
        if read is None:
            return None
        oid, pos = read
        for layout in self.layouts:
            matched = layout.match_head(value, pos)
            if matched is None:
                continue
            features, dtype = matched
            after_class = self._skip_string(value, features.end())
            if after_class is None:
                return None
            hierarchical = layout.tail.fullmatch(value, after_class)
            if hierarchical is None:
                continue
            top = struct.unpack(f"<{len(layout.top_classes)}f", b"".join(hierarchical.groups()))
            nan = _NAN[dtype]
            groups = features.groups(nan)  # per feature: (number or nan, other value or nan)
            values = np.frombuffer(b"".join(groups[0::2]) + nan, dtype=dtype)
            others = groups[1::2]
            if others.count(nan) != len(others):  # booleans or integers among the features
                values = values.copy()
                for i, other in enumerate(others):
                    if other is not nan:
                        number = self._other(other)
                        if number is None:
                            return None
                        values[i] = number
            return FastRecord(oid, dict(zip(layout.top_classes, top, strict=True)), layout, values)
        return None

    def _read_id(self, value: bytes, start: int) -> tuple[str, int] | None:
        read = _read_long(value, start)
        if read is None:
            return None
        n, pos = read
        if not self.shape.id_is_string:
            return str(n), pos
        if n <= 0 or pos + n > len(value):
            return None  # empty ids are reported by the generic path
        try:
            return value[pos : pos + n].decode(), pos + n
        except UnicodeDecodeError:
            return None

    def _other(self, encoded: bytes) -> float | None:
        """A boolean, int or long feature (union branch byte, then the value) as the generic
        path converts it: int -> float64 (numpy then rounds to the row's float32)."""
        kind = self._other_kinds[encoded[0] >> 1]
        if kind == "boolean":
            return float(encoded[1])
        read = _read_long(encoded, 1)
        return None if read is None else float(read[0])

    @staticmethod
    def _skip_string(value: bytes, pos: int) -> int | None:
        read = _read_long(value, pos)
        if read is None:
            return None
        n, pos = read
        if n < 0 or pos + n > len(value):
            return None
        try:
            value[pos : pos + n].decode()
        except UnicodeDecodeError:
            return None
        return pos + n

    def learn(self, record: Any) -> bool:
        """Learn the key order of a record the generic decoder returned; True if new."""
        if len(self.layouts) >= MAX_LAYOUTS:
            return False
        try:
            key = _layout_key(record)
        except (KeyError, TypeError, AttributeError):
            return False
        if key is None or key in self._known:
            return False
        try:
            layout = self._compile(*key)
        except UnicodeEncodeError:
            return False
        self._known.add(key)
        self.layouts.append(layout)
        return True

    def _compile(
        self,
        features: Sequence[str],
        probabilities: Sequence[str],
        top: Sequence[str],
        hierarchical: Sequence[tuple[str, Any]],
    ) -> Layout:
        s = self.shape
        head: list[Part] = [Lit(write_long(s.features_map) + _map_start(len(features)))]
        for name in features:
            head += [Lit(_string(name)), FEATURE]
        head += [Lit(_MAP_END + _map_start(len(probabilities)))]
        for name in probabilities:
            head += [Lit(_string(name) + s.probability_branch), Hole(4, keep=False)]
        head.append(Lit(_MAP_END))
        tail: list[Part] = [Lit(_map_start(len(hierarchical)))]
        for key, children in hierarchical:
            tail.append(Lit(_string(key)))
            if children is None:  # 'top': keep its floats
                tail.append(Lit(write_long(s.flat) + _map_start(len(top))))
                for name in top:
                    tail += [Lit(_string(name)), Hole(4, keep=True)]
                tail.append(Lit(_MAP_END))
                continue
            tail.append(Lit(write_long(s.nested) + _map_start(len(children))))
            for child, grandchildren in children:
                tail.append(Lit(_string(child) + _map_start(len(grandchildren))))
                for name in grandchildren:
                    tail += [Lit(_string(name)), Hole(4, keep=False)]
                tail.append(Lit(_MAP_END))
            tail.append(Lit(_MAP_END))
        tail.append(Lit(_MAP_END))
        heads = tuple(
            (re.compile(self._pattern(head, self._feature_pattern(b, dtype)), re.DOTALL), dtype)
            for b, dtype in s.feature_numbers
        )
        return Layout(
            tuple(features),
            tuple(top),
            tuple(head),
            tuple(tail),
            heads,
            re.compile(self._pattern(tail, b""), re.DOTALL),
        )

    def _feature_pattern(self, branch: int, dtype: str) -> bytes:
        """A feature value with two groups: a number of ``dtype``, or another value (with its
        union branch); null matches neither."""
        s = self.shape
        other = b"|".join(
            _lit(write_long(b)) + (b"[\\x00\\x01]" if kind == "boolean" else _VARINT)
            for b, kind in s.feature_others
        )
        return b"(?:%s(%s)|%s|(%s))" % (
            _lit(write_long(branch)),
            b"." * np.dtype(dtype).itemsize,
            _lit(write_long(s.feature_null)),
            other or b"(?!)",
        )

    @staticmethod
    def _pattern(parts: Sequence[Part], feature: bytes) -> bytes:
        out = []
        for part in parts:
            if isinstance(part, Lit):
                out.append(_lit(part.data))
            elif isinstance(part, Hole):
                out.append(b"(%s)" % (b"." * part.size) if part.keep else b"." * part.size)
            else:
                out.append(feature)
        return b"".join(out)


_MAP_END = b"\x00"  # a map's last block: count 0
_VARINT = b"[\\x80-\\xff]{0,9}[\\x00-\\x7f]"


def _map_start(n: int) -> bytes:
    """The block count of a map written in one block (an empty map is only its end marker)."""
    return write_long(n) if n else b""


LayoutKey = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[tuple[str, Any], ...]]


def _layout_key(record: Any) -> LayoutKey | None:
    """(feature keys, probability keys, 'top' keys, hierarchical parts) of a decoded record in
    wire order; a hierarchical part is ('top', None) or (name, ((child, grandchild keys), ...)).
    None when a layout would not help (no features, no 'top', an unexpected part)."""
    features = record["features"]
    classification = record["lc_classification"]
    hierarchical = classification["hierarchical"]
    parts: list[tuple[str, Any]] = []
    for name, value in hierarchical.items():
        if name == "top":
            parts.append((name, None))
        elif value and all(isinstance(v, Mapping) for v in value.values()):
            parts.append((name, tuple((k, tuple(v)) for k, v in value.items())))
        else:
            return None
    if not isinstance(features, Mapping) or not features or not hierarchical.get("top"):
        return None
    return (
        tuple(features),
        tuple(classification["probabilities"]),
        tuple(hierarchical["top"]),
        tuple(parts),
    )
