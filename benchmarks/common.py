"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service import __version__
from service.core.processing import AlertProcessor
from service.core.routing import Route
from service.records import Row, ScoredBatch

# tansu answers a fetch only when fetch.wait.max.ms has passed, even when data arrives earlier
# (Kafka answers as soon as fetch.min.bytes are there): with librdkafka's default of 500 ms that
# alone adds 0-500 ms to every alert. Every consumer of the benchmarks gets this on tansu.
TANSU_CONSUMER = {"fetch.wait.max.ms": "10"}


def cores() -> int:
    return len(os.sched_getaffinity(0))


def code_version() -> str | None:
    """The commit the benchmark runs (``+changes`` when the checkout differs from it); None
    outside a git checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        if done.returncode:
            raise OSError(done.stderr.strip())
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short=7", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except OSError:  # no git, or not a checkout (an installed package)
        return None
    return commit + ("+changes" if changed else "")


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
    return None if pid is None else cpu_seconds_of(Path(f"/proc/{pid}/stat"))


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


def thread_cpu_seconds(native_id: int) -> float | None:
    """User and system CPU seconds of one thread of this process (Linux /proc), or None."""
    return cpu_seconds_of(Path(f"/proc/self/task/{native_id}/stat"))


def cpu_seconds_of(stat: Path) -> float | None:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StageTimer:
    """Where one thread spends its CPU time, exactly: while the timer is on, the named methods
    (``(class, method name)`` -> stage) are wrapped, and the CPU time of that thread (its own
    CPU clock) from entering one to leaving it is charged to its stage, less the time spent in
    named methods it calls. Calls from other threads pass through. Name per-batch methods only:
    the wrapper costs about a microsecond per call."""

    def __init__(self, thread_id: int, stages: dict[tuple[type, str], str]) -> None:
        self.thread_id, self.stages = thread_id, stages
        self.cpu_seconds: dict[str, float] = {}
        self._nested: list[float] = []  # CPU time of named calls inside each open one
        self._originals: dict[tuple[type, str], Any] = {}

    def start(self) -> StageTimer:
        for (cls, name), stage in self.stages.items():
            original = self._originals[(cls, name)] = cls.__dict__[name]
            setattr(cls, name, self._wrap(original, stage))
        return self

    def stop(self) -> None:
        for (cls, name), original in self._originals.items():
            setattr(cls, name, original)
        self._originals.clear()

    def _wrap(self, method: Any, stage: str) -> Any:
        timer, thread_id = self, self.thread_id

        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != thread_id:
                return method(*args, **kwargs)
            started = time.thread_time()
            timer._nested.append(0.0)
            try:
                return method(*args, **kwargs)
            finally:
                elapsed = time.thread_time() - started
                inner = timer._nested.pop()
                timer.cpu_seconds[stage] = timer.cpu_seconds.get(stage, 0.0) + elapsed - inner
                if timer._nested:
                    timer._nested[-1] += elapsed

        return timed

    def us_per_alert(self, alerts: int) -> dict[str, float]:
        """CPU microseconds per alert by stage, largest first."""
        ordered = sorted(self.cpu_seconds.items(), key=lambda item: -item[1])
        return {stage: s / max(alerts, 1) * 1e6 for stage, s in ordered}


def score_now(processor: AlertProcessor, top: str, rows: list[Row]) -> ScoredBatch:
    """A batch of rows of class ``top`` scored here and now (no inference worker), as the
    processor's score records."""
    started = time.perf_counter()
    features = np.stack([row.features for row in rows])
    scores = processor.routes[top].scorer.score(features, processor.explain)
    seconds = time.perf_counter() - started
    return processor.scored_batch(
        top, rows, scores.raw, scores.percentile, scores.nearest_index, seconds, scores.explanation
    )


def score_record(
    message: Any,
    oid: str,
    survey: str,
    top_class: str,
    probability: float,
    route: Route,
    score: tuple[float, float, str | None],
    coverage: float | None,
) -> dict[str, Any]:
    """One anomaly-score record (``schemas/anomaly-score``), as the baselines build it field by
    field for a consumed ``message``; ``score`` is (raw, percentile, nearest subclass). The
    baselines explain no score (``explanation`` empty, as with ``model.explain_features 0``)
    and re-rank none (the re-ranker's fields null, as without ``model.reranker``)."""
    raw, percentile, nearest = score
    manifest = route.bundle.manifest
    return {
        "oid": oid,
        "survey": survey,
        "top_class": top_class,
        "top_class_probability": probability,
        "scorer": manifest.scorer,
        "score": raw,
        "percentile": percentile,
        "nearest_subclass": nearest,
        "model_version": manifest.model_version,
        "model_checksum": route.bundle.checksum,
        "scored_at": int(time.time() * 1000),
        "source_topic": message.topic(),
        "source_partition": message.partition(),
        "source_offset": message.offset(),
        "source_timestamp": message.timestamp()[1],
        "service_version": __version__,
        "feature_coverage": coverage,
        "explanation": [],
        "reranked_percentile": None,
        "reranker_expert": None,
        "reranker_version": None,
        "reranker_checksum": None,
    }
