"""The records every stage hands on, on the ground floor: sources make :class:`Input` s, the
processor turns them into :class:`Row` s (or an :class:`~service.exceptions.InputError`), a batch
of rows becomes a :class:`ScoredBatch`, sinks write it and report each :class:`Lineage` written.

Plain data only: nothing here imports torch, numba or a Kafka client, so that sources, sinks and
tools that only read or write records stay light (a test checks it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from service.exceptions import InputError

Headers = list[tuple[str, str | bytes | None]]
Partition = tuple[str, int]  # (stream, partition): what a source commits offsets of
Columns = Mapping[str, Any]  # records by field: a list per field, or one value for every row


class Lineage(NamedTuple):  # a named tuple: one is made per message, and cheaply
    """Where an input came from: a topic position, or a file (``file:<name>``, partition 0,
    offset = record index)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None

    @property
    def partition_key(self) -> Partition:
        return (self.topic, self.partition)


class Input(NamedTuple):
    """One unit of input: message bytes, or a table row's decoded records."""

    source: Lineage  # where it came from: also the (stream, partition, offset) committed
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    records: list[Any] | None = None  # already decoded (a table row); [] = nothing to score

    @property
    def skipped(self) -> bool:
        """Read only to move past it (outside a replay's range): it has no output."""
        return self.records is not None and not self.records


class Row(NamedTuple):
    """One routed alert, ready for a micro-batch."""

    source: Lineage
    oid: str
    top_probability: float
    features: NDArray[np.float32]
    coverage: float  # share of the model's features that have a value (not null) in the record
    # the input's headers, for a dead letter that stands for its score (set by the engine)
    headers: Headers | None = None
    # the input itself, for a sink that writes from it (output.format alerce; set by the engine)
    origin: Input | None = None
    # where the input's lc_classification begins (its byte offset; -1: not known), as the batch
    # decoder found it: output.format alerce writes the input's bytes before it
    head: int = -1


# per input: its rows by class, or why it is a dead letter
Routed = list[tuple[str, Row]] | InputError


@dataclass(frozen=True)
class ScoredBatch:
    """A scored micro-batch of one class: its anomaly-score records by field, in row order."""

    top_class: str
    columns: Columns
    raw: NDArray[np.float32]
    percentile: NDArray[np.float32]
    seconds: float  # inference time

    @property
    def records(self) -> list[dict[str, Any]]:
        """The anomaly-score records, one per row."""
        return records_of(self.columns, len(self.raw))


# what a sink calls when an output of each input at these lineages is written (a batch at once)
Written = Callable[[Sequence[Lineage]], None]


def records_of(columns: Columns, n: int) -> list[dict[str, Any]]:
    """Columns (a list per field, or one value for all ``n`` records) -> ``n`` records."""
    return [{k: v[i] if isinstance(v, list) else v for k, v in columns.items()} for i in range(n)]
