"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path


def cores() -> int:
    return len(os.sched_getaffinity(0))


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"machine: {cpu}, {cores()} cores, Python {platform.python_version()}"


STEADY = (0.1, 0.9)  # steady state: from this fraction of the alerts done to this one


class Progress:
    """When the counts of :data:`STEADY` were reached, from a growing count of alerts done:
    the rate between them leaves out the start (group join, first fetches, an empty prefetch
    queue) and the end (the last, partly filled batches)."""

    def __init__(self, n: int) -> None:
        self.marks = [max(1, int(n * f)) for f in STEADY]
        self.times: dict[int, float] = {}

    def update(self, done: int, now: float) -> None:
        for mark in self.marks:
            if done >= mark and mark not in self.times:
                self.times[mark] = now

    def per_second(self) -> float:
        first, last = self.marks
        if last not in self.times or self.times[last] <= self.times[first]:
            return 0.0
        return (last - first) / (self.times[last] - self.times[first])


def cpu_seconds(pid: int | None) -> float | None:
    """User and system CPU seconds a process (all its threads) has used (Linux /proc); None
    where that is unknown (an external broker, another system)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time of named processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self._started = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.seconds: dict[str, float] = {}

    def stop(self) -> None:
        for name, pid in self.pids.items():
            before, after = self._started[name], cpu_seconds(pid)
            if before is not None and after is not None:
                self.seconds[name] = after - before

    def us_per_alert(self, alerts: int) -> dict[str, float]:
        return {name: s / max(alerts, 1) * 1e6 for name, s in self.seconds.items()}


@dataclass
class Throughput:
    alerts: int
    seconds: float  # first message consumed to last output acknowledged
    steady_per_second: float  # between the STEADY fractions of the alerts
    cpu_us_per_alert: dict[str, float] = field(default_factory=dict)  # by process

    @property
    def per_second(self) -> float:
        """From the first message consumed to the last output acknowledged."""
        return self.alerts / self.seconds if self.seconds > 0 else 0.0
