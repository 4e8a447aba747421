"""The composition root: a source, the processor, inference and a sink, made from the settings.

``input.kind`` and ``output.kind`` choose the source and the sink from the registries
(:mod:`service.registry`); the :class:`Pipeline` makes them with the processor
(:mod:`service.core.processing`), owns the offset tracker that lets a source commit only what its
sink has written and the inference's lifetime (a worker process, started for batches of the
engine's size and closed when the run ends), and runs the one loop (:class:`Engine`).

The commands are presets of it: ``run`` and ``demo`` the live service (:mod:`service.live`: a
consumer group, a sink without checkpoints, :func:`live_options`); ``replay``, ``score`` and
``top`` a bounded run (:meth:`Pipeline.replay`: a topic range or files, into topics, a Parquet
dataset or memory; dead letters summarised, checkpoints every ``checkpoint_every`` inputs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from service.config import Settings
from service.core.engine import Engine, Options, Stats
from service.core.offsets import OffsetTracker
from service.core.processing import AlertProcessor, Inference, start_inference
from service.core.routing import Route
from service.exceptions import KafkaServiceError
from service.io.sinks import OutputSink
from service.io.sources import InputSource
from service.ops.availability import Brokers
from service.ops.metrics import Metrics
from service.registry import SINKS, SOURCES, Wiring

BATCH_DELAY_S = 60.0  # bounded runs fill their batches; the end of the input drains them
CHECKPOINT_EVERY = 5000  # inputs between a bounded run's checkpoints


@dataclass(frozen=True)
class Summary:
    """What a bounded run did."""

    read: int
    scored: int
    dead_lettered: int
    seconds: float
    by_reason: dict[str, int] = field(default_factory=dict)  # dead letters by reason
    # the first dead letter of each reason: (stream, partition, offset, error)
    first_dead_letter: dict[str, tuple[str, int, int, str]] = field(default_factory=dict)

    def line(self, where: str) -> str:
        return (
            f"read {self.read}, scored {self.scored}, dead-lettered {self.dead_lettered} "
            f"in {self.seconds:.1f} s -> {where}"
        )


def live_options(settings: Settings) -> Options:
    """The live service's loop: batches by size and deadline, periodic commits."""
    return Options(
        max_rows=settings.batch.max_rows,
        max_delay_s=settings.batch.max_delay_ms / 1000,
        flush_when_idle=settings.batch.flush_when_idle,
        commit_interval_s=settings.commit_interval_ms / 1000,
        drain_timeout_s=settings.drain_timeout_s,
        stop_after_idle_s=settings.stop_after_idle_s,
    )


def bounded_options(settings: Settings, rows: int, checkpoint_every: int) -> Options:
    """A bounded run's loop: full batches, a checkpoint every ``checkpoint_every`` inputs,
    dead letters summarised by the command rather than logged one by one."""
    return Options(
        max_rows=rows,
        max_delay_s=BATCH_DELAY_S,
        commit_interval_s=float("inf"),
        drain_timeout_s=settings.drain_timeout_s,
        checkpoint_every=checkpoint_every,
        log_dead_letters=False,
    )


class Pipeline:
    """A source, the processor, inference and a sink wired from ``settings`` (see the module
    docstring). ``processor``: one already made (its models loaded)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        brokers: Brokers | None = None,
        processor: AlertProcessor | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        kafka = settings.kafka
        self.brokers = brokers or Brokers(kafka.bootstrap_servers, kafka.unavailable_timeout_s)
        self.processor = processor or AlertProcessor(settings)
        self.tracker = OffsetTracker()
        self.engine: Engine | None = None
        self._inference: Inference | None = None

    def wiring(self, resume: dict[str, Any] | None = None) -> Wiring:
        return Wiring(
            self.settings,
            self.metrics,
            self.brokers,
            self.tracker.written,
            self.processor.survey.id_fields[0],
            resume or {},
        )

    def make_sink(self) -> OutputSink:
        """The sink of ``output.kind``."""
        return SINKS[self.settings.output.kind].make(self.wiring())

    def make_source(self, resume: dict[str, Any] | None = None) -> InputSource:
        """The source of ``input.kind``, resuming from ``resume`` (a sink's saved state)."""
        return SOURCES[self.settings.input.kind].make(self.wiring(resume))

    def start(
        self,
        source: InputSource,
        sink: OutputSink,
        options: Options,
        on_ready: Callable[[bool], None] | None = None,
        on_read: Callable[[int], None] | None = None,
    ) -> Engine:
        """Start the inference for batches of ``options.max_rows`` and make the engine that will
        drive ``source`` into ``sink`` (:meth:`run` runs it)."""
        self._inference = start_inference(self.settings, self.processor.routes, options.max_rows)
        self.engine = Engine(
            self.processor,
            self._inference,
            source,
            sink,
            self.tracker,
            options,
            self.metrics,
            on_ready=on_ready,
            on_read=on_read,
            restart_inference=lambda routes: self._restart_inference(routes, options.max_rows),
        )
        return self.engine

    def _restart_inference(self, routes: dict[str, Route], max_rows: int) -> Inference:
        """A new inference for reloaded bundles; the old one is closed once it has started
        (if it cannot start, the old one is kept)."""
        new = start_inference(self.settings, routes, max_rows)
        old, self._inference = self._inference, new
        if old is not None:
            old.close()
        return new

    @property
    def inference_pid(self) -> int | None:
        """The inference worker's process id while it runs (None: inline, or not started)."""
        return getattr(self._inference, "pid", None)

    def run(self, heartbeat: Callable[[], None] | None = None) -> Stats:
        """Run the started engine until it ends; the inference is closed with it."""
        assert self.engine is not None, "start() first"
        try:
            return self.engine.run(heartbeat)
        finally:
            self.close_inference()

    def close_inference(self) -> None:
        if self._inference is not None:
            self._inference.close()
            self._inference = None

    def replay(
        self,
        source: InputSource | None = None,
        sink: OutputSink | None = None,
        batch_rows: int | None = None,
        checkpoint_every: int = CHECKPOINT_EVERY,
        progress: str | None = "replay",
    ) -> Summary:
        """The bounded preset: every input of the source into the sink (by default those of
        ``input.kind`` and ``output.kind``; a source resumes from the sink's checkpoint), in
        batches of ``batch_rows`` (default ``batch.max_rows``); ``progress`` labels the progress
        bar (None: no bar). Raises KafkaServiceError when outputs stay unwritten at the end."""
        if sink is None:
            sink = self.make_sink()
        if source is None:
            try:
                source = self.make_source(sink.resumed())
            except BaseException:
                sink.close()
                raise
        rows = batch_rows or self.settings.batch.max_rows
        read = 0
        bar = tqdm(total=source.total(), unit="msg", disable=progress is None, desc=progress)

        def count(n: int) -> None:
            nonlocal read
            read += n
            if bar.total is not None and read > bar.total:
                bar.total = read  # the estimate was short (watermarks, a growing topic)
            bar.update(n)

        try:
            options = bounded_options(self.settings, rows, checkpoint_every)
            self.start(source, sink, options, on_read=count)
            started = time.monotonic()  # the inference is started: the run is timed from here
            stats = self.run()
            bar.total = read  # the range's true size, now known: the bar ends full
            bar.refresh()
        finally:
            bar.close()
            self.close_inference()
        if self.tracker.in_flight():
            raise KafkaServiceError(
                f"{self.tracker.in_flight()} inputs have outputs that were not written"
            )
        return Summary(
            read,
            stats.scored,
            stats.dead_lettered,
            time.monotonic() - started,
            dict(stats.by_reason),
            dict(stats.first_dead_letter),
        )
