"""The byte layout that every message of a classifier-record stream shares, learned from one
message.

Generic Avro decoding (fastavro) walks the schema for every value: about 1 us per feature, most
of the service's time per alert. But a producer writes its maps' keys in one fixed order, so the
messages of a stream differ only in their values, in which features are null and in two strings
(the object id and the predicted class). A :class:`Layout`, learned from a message the generic
decoder has decoded, describes that common form as parts: bytes every message has
(:class:`Lit`), feature values (:class:`Feature`: a union branch, then a number, nothing or a
small other value) and probabilities (:class:`Hole`). :mod:`service.io.codecs.batchdecode` runs
layouts over whole batches in one loop compiled with numba.

The :class:`Shape` of a schema says where its union branches are: the features as a map (keys
learned) or as a record of nullable fields (ALeRCE's version 1: each field float or double as
declared), the probabilities as plain floats or as a one-branch union (ALeRCE writes
``["float"]``), the object id as a string or a long. A schema of another shape gets no layouts
and is decoded generically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from service.io.codecs.avrowrite import write_long

MAX_LAYOUTS = 8  # distinct key orders kept (a stream has one; more would be unusual)
# kinds of feature values a layout can read: numbers, null, and small others
VALUE_KINDS = frozenset({"float", "double", "null", "boolean", "int", "long"})


class ValueType(NamedTuple):
    """The union a feature value is written as: the kind of each branch, in order."""

    kinds: tuple[str, ...]


@dataclass(frozen=True)
class Shape:
    """Union branches and parts of a classifier-record schema (what layouts need)."""

    id_field: str
    id_is_string: bool
    features_branch: int | None  # the map's or record's branch in the 'features' union
    record_fields: tuple[tuple[str, ValueType], ...] | None  # features as a record
    map_values: ValueType | None  # features as a map
    probability_branch: int | None  # float's branch when probabilities are a union
    flat: int  # branches of the 'hierarchical' values' union: map<float> ...
    nested: int  # ... and map<map<float>>

    @classmethod
    def of(cls, schema: Mapping[str, Any], id_fields: Sequence[str]) -> Shape | None:
        """The shape of ``schema``, or None when it is not a classifier record as expected."""
        try:
            names = [f["name"] for f in schema["fields"]]
            if (
                schema["type"] != "record"
                or names[1:] != ["features", "lc_classification"]
                or names[0] not in id_fields
            ):
                return None
            id_type, features, classification = (f["type"] for f in schema["fields"])
            branch, container = _one_container(features)
            parts = {f["name"]: f["type"] for f in classification["fields"]}
            probability = parts["probabilities"]["values"]
            hierarchical = [_kind(t) for t in parts["hierarchical"]["values"]]
            if (
                id_type not in ("string", "long")
                or container is None
                or list(parts) != ["probabilities", "class", "hierarchical"]
                or parts["probabilities"]["type"] != "map"
                or parts["class"] != "string"
                or not (
                    probability == "float"
                    or (isinstance(probability, list) and "float" in probability)
                )
            ):
                return None
            record_fields = map_values = None
            if container["type"] == "map":
                map_values = _value_type(container["values"])
                if map_values is None:
                    return None
            else:
                record_fields = tuple(
                    (f["name"], _value_type(f["type"])) for f in container["fields"]
                )
                if any(t is None for _, t in record_fields):
                    return None
            return cls(
                id_field=names[0],
                id_is_string=id_type == "string",
                features_branch=branch,
                record_fields=record_fields,  # type: ignore[arg-type]  # no None left
                map_values=map_values,
                probability_branch=probability.index("float")
                if isinstance(probability, list)
                else None,
                flat=hierarchical.index("map<float>"),
                nested=hierarchical.index("map<map<float>>"),
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return None


def _one_container(features: Any) -> tuple[int | None, dict[str, Any] | None]:
    """(union branch or None, the map or record type) of the 'features' field."""
    if isinstance(features, dict):
        return None, features if features.get("type") in ("map", "record") else None
    found = [
        (i, t)
        for i, t in enumerate(features)
        if isinstance(t, dict) and t.get("type") in ("map", "record")
    ]
    return found[0] if len(found) == 1 else (None, None)


def _value_type(avro_type: Any) -> ValueType | None:
    """A feature value's union as a :class:`ValueType`; None unless it is a union of the
    primitive kinds a layout reads, with a number among them."""
    if not isinstance(avro_type, list) or not set(avro_type) <= VALUE_KINDS:
        return None
    if not {"float", "double"} & set(avro_type):
        return None
    return ValueType(tuple(avro_type))


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


class Feature(NamedTuple):
    """A feature's value: its union branch, then a number, nothing (null) or a small other."""

    type: ValueType


Part = Lit | Hole | Feature


@dataclass(frozen=True)
class Layout:
    """One key order of a classifier record, as parts: the features and probabilities
    (``head``), then the predicted class string (read separately), then the hierarchical
    probabilities (``tail``)."""

    feature_names: tuple[str, ...]
    top_classes: tuple[str, ...]
    head_parts: tuple[Part, ...]
    tail_parts: tuple[Part, ...]

    @property
    def feature_types(self) -> tuple[ValueType, ...]:
        return tuple(p.type for p in self.head_parts if isinstance(p, Feature))


class LayoutLearner:
    """The layouts of a schema's stream, learned from records the generic decoder returned."""

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.layouts: list[Layout] = []
        self._known: set[tuple[Any, ...]] = set()

    @classmethod
    def for_schema(
        cls, schema: Mapping[str, Any], id_fields: Sequence[str]
    ) -> LayoutLearner | None:
        shape = Shape.of(schema, id_fields)
        return cls(shape) if shape is not None else None

    def learn(self, record: Any) -> bool:
        """Learn the key order of a decoded record; True if it is a new layout."""
        if len(self.layouts) >= MAX_LAYOUTS:
            return False
        try:
            key = _layout_key(record)
        except (KeyError, TypeError, AttributeError):
            return False
        if key is None or key in self._known:
            return False
        fields = self.shape.record_fields
        if fields is not None and key[0] != tuple(name for name, _ in fields):
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
        head: list[Part] = []
        if s.features_branch is not None:
            head.append(Lit(write_long(s.features_branch)))
        if s.record_fields is not None:
            head += [Feature(value_type) for _, value_type in s.record_fields]
        else:
            assert s.map_values is not None
            head.append(Lit(_map_start(len(features))))
            for name in features:
                head += [Lit(_string(name)), Feature(s.map_values)]
            head.append(Lit(MAP_END))
        head.append(Lit(_map_start(len(probabilities))))
        branch = b"" if s.probability_branch is None else write_long(s.probability_branch)
        for name in probabilities:
            head += [Lit(_string(name) + branch), Hole(4, keep=False)]
        head.append(Lit(MAP_END))
        tail: list[Part] = [Lit(_map_start(len(hierarchical)))]
        for key, children in hierarchical:
            tail.append(Lit(_string(key)))
            if children is None:  # 'top': keep its floats
                tail.append(Lit(write_long(s.flat) + _map_start(len(top))))
                for name in top:
                    tail += [Lit(_string(name)), Hole(4, keep=True)]
                tail.append(Lit(MAP_END))
                continue
            tail.append(Lit(write_long(s.nested) + _map_start(len(children))))
            for child, grandchildren in children:
                tail.append(Lit(_string(child) + _map_start(len(grandchildren))))
                for name in grandchildren:
                    tail += [Lit(_string(name)), Hole(4, keep=False)]
                tail.append(Lit(MAP_END))
            tail.append(Lit(MAP_END))
        tail.append(Lit(MAP_END))
        return Layout(tuple(features), tuple(top), tuple(head), tuple(tail))


MAP_END = b"\x00"  # a map's last block: count 0


def _string(text: str) -> bytes:
    data = text.encode()
    return write_long(len(data)) + data


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
