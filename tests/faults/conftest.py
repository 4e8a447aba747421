"""The fault suite: the service under hostile input, kills, frozen and restarted brokers. Every
scenario is verified by an independent client (kafka-python) reading every topic from the
beginning, and prints what was lost (must be 0) and duplicated. ``make faults`` runs it."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pytest

from service.io.codecs.avro import decode_output
from tests.integration.conftest import service_process
from tests.reading import read_all

__all__ = ["service_process"]  # the fixture, for the fault tests


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.faults)


@dataclass
class Audit:
    """Inputs against outputs, by (partition, offset) lineage."""

    inputs: set[tuple[int, int]]
    outputs: Counter[tuple[int, int]]

    @property
    def lost(self) -> set[tuple[int, int]]:
        return self.inputs - set(self.outputs)

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for key, n in self.outputs.items() if key in self.inputs)

    def line(self, what: str) -> str:
        return (
            f"\n{what}: {len(self.inputs)} inputs, {sum(self.outputs.values())} outputs, "
            f"lost {len(self.lost)}, duplicates {self.duplicates}"
        )


def lineage(messages: Iterable) -> Counter[tuple[int, int]]:
    """(source partition, source offset) of every score and dead letter."""
    out: Counter[tuple[int, int]] = Counter()
    for m in messages:
        headers = dict(m.headers or [])
        if "alert_anomaly.source_offset" in headers:
            out[
                (
                    int(headers["alert_anomaly.source_partition"]),
                    int(headers["alert_anomaly.source_offset"]),
                )
            ] += 1
        else:
            score = decode_output(m.value)
            out[(score["source_partition"], score["source_offset"])] += 1
    return out


def audit(bootstrap: str, names: tuple[str, str, str], inputs: set[tuple[int, int]]) -> Audit:
    outputs = lineage(read_all(bootstrap, names[1], quiet_s=3.0)) + lineage(
        read_all(bootstrap, names[2], quiet_s=3.0)
    )
    return Audit(inputs, outputs)


def audit_when_complete(
    bootstrap: str, names: tuple[str, str, str], inputs: set[tuple[int, int]], timeout_s: float
) -> Audit:
    """The audit once no input lacks an output, or after ``timeout_s`` (re-read every 2 s)."""
    deadline = time.monotonic() + timeout_s
    result = audit(bootstrap, names, inputs)
    while result.lost and time.monotonic() < deadline:
        time.sleep(2)
        result = audit(bootstrap, names, inputs)
    return result
