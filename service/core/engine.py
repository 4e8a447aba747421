"""The loop that drives a source, the processor and a sink: read -> decode and route -> micro-batch
-> score -> write -> commit, at least once. The live service, replays, offline scoring and ``top``
are this loop with other sources and sinks.

One thread drives everything (librdkafka and the inference worker do their work elsewhere):

* inputs are read in batches, decoded and routed by the processor (:mod:`service.core.processing`);
  every input is registered with the number of outputs it will have;
* rows wait in a :class:`MicroBatcher` per class until it is full or its deadline passes - or,
  with ``flush_when_idle``, until a read finds nothing new while no batch is being scored - then
  go to inference (a late batch waits while inference holds ``QUEUED_BATCHES``, and grows);
  scored batches go to the sink, and so do dead letters;
* the sink reports every written output to the :class:`OffsetTracker`, and only positions whose
  outputs (and all earlier ones in the partition) are written get committed, every
  ``commit_interval`` and at the end;
* on revocation (live) the open batches are scored and the revoked partitions' outputs awaited
  (at most ``drain_timeout``) and committed; a bounded source is drained and checkpointed every
  ``checkpoint_every`` inputs and at its end;
* every ``model.reload_interval_s``, between micro-batches, a changed re-ranker is swapped in
  (:mod:`service.core.reranking`) and changed bundles are reloaded: loaded and verified, the
  open batches scored and published by the old ones, a new inference started, then the routes
  swapped (:meth:`Engine._reload_bundles`); a reload that fails keeps the old models.

The pipeline (:mod:`service.pipeline`) makes the engine and owns the inference it is given; the
engine closes the source and the sink as the last steps of its drain, within its deadline.

Over 300 lines on purpose: one class whose loop, drain, commits and rebalance handlers share the
batcher, the tracker and the drain deadline; apart, each would reach into the others' state.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from service.core.batching import MicroBatcher
from service.core.offsets import OffsetTracker
from service.core.processing import AlertProcessor, Inference
from service.core.routing import Route
from service.exceptions import InferenceError, InputError
from service.io.sinks import OutputSink
from service.io.sources import InputSource
from service.ops.metrics import Metrics
from service.records import Input, Partition, Row

log = structlog.get_logger(__name__)

IDLE_WAIT_S = 0.5  # longest wait for input before the loop's housekeeping runs again
# ... while outputs await acknowledgement or batches their scores: acknowledgements and scores
# are only seen between reads, so this bounds how long either waits unseen
BUSY_POLL_S = 0.002
# batches in inference (one being scored, one queued) before a late batch waits for one to come
# back: the model never starves, and the batch that waits grows - a larger batch costs less per
# alert (the model's and the explanation's fixed cost per batch), which is what saturation needs
QUEUED_BATCHES = 2
# after the drain: the least time the final commit and the closing of each client get (they get
# what is left of drain_timeout_s if more), so a stop ends within drain_timeout + 3 x this
CLOSE_S = 2.0


@dataclass(frozen=True)
class Options:
    max_rows: int
    max_delay_s: float
    commit_interval_s: float
    drain_timeout_s: float
    # release open batches when a read finds nothing new and inference is idle (live service)
    flush_when_idle: bool = False
    # stop after this long without input, counted from the last input or partition assignment
    # (a consumer group's join can take longer than the limit: the clock waits for it)
    stop_after_idle_s: float | None = None
    checkpoint_every: int | None = None  # bounded sources: inputs between checkpoints
    # each dead letter is a warning in the log (the live service); offline commands summarise
    # them instead (debug lines)
    log_dead_letters: bool = True


@dataclass
class Stats:
    """Counts since start; read by the demo, the commands and tests."""

    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    # dead letters by reason, and the first of each: (stream, partition, offset, error)
    by_reason: dict[str, int] = field(default_factory=dict)
    first_dead_letter: dict[str, tuple[str, int, int, str]] = field(default_factory=dict)
    first_consumed_at: float | None = None  # time.monotonic()
    tracker: OffsetTracker = field(default_factory=OffsetTracker, repr=False)

    @property
    def last_acknowledged_at(self) -> float | None:
        """When the last output was written (time.monotonic())."""
        return self.tracker.last_written_at

    @property
    def acknowledged(self) -> int:
        """Outputs written (acknowledged by the broker, or in a file)."""
        return self.tracker.written_outputs

    @property
    def completed(self) -> int:
        """Inputs whose every output is written: a dead letter, or the scores of its records
        and what the sink writes beside each (ALeRCE's scribe commands)."""
        return self.tracker.completed_inputs

    def throughput(self) -> float:
        """Outputs written per second, from the first input read to the last output written."""
        last = self.tracker.last_written_at
        if self.first_consumed_at is None or last is None:
            return 0.0
        return self.acknowledged / max(1e-9, last - self.first_consumed_at)


class Engine:
    """Runs until stopped, idle for ``stop_after_idle_s`` or - bounded sources - exhausted."""

    def __init__(
        self,
        processor: AlertProcessor,
        inference: Inference,
        source: InputSource,
        sink: OutputSink,
        tracker: OffsetTracker,
        options: Options,
        metrics: Metrics,
        on_ready: Callable[[bool], None] | None = None,
        on_read: Callable[[int], None] | None = None,
        restart_inference: Callable[[dict[str, Route]], Inference] | None = None,
    ) -> None:
        self.processor, self.inference = processor, inference
        self._restart_inference = restart_inference  # bundles are reloaded only with one
        self.source, self.sink, self.tracker = source, sink, tracker
        self.options, self.metrics = options, metrics
        self.stats = Stats(tracker=tracker)
        self._on_ready = on_ready or (lambda ready: None)
        self._on_read = on_read or (lambda n: None)
        self.batcher: MicroBatcher[Row] = MicroBatcher(options.max_rows, options.max_delay_s)
        self._stopping = False
        self._idle_since: float | None = None  # the last input or assignment (idle clock)
        self._decode_seconds: list[float] = []
        self._decoded: dict[str, int] = {}
        self._batch_id = 0
        metrics.record_reranker(processor.reranking.current)

    def stop(self) -> None:
        """Ask the loop to drain, commit and return (safe from a signal handler)."""
        self._stopping = True

    def run(self, heartbeat: Callable[[], None] | None = None) -> Stats:
        o = self.options
        self.source.start(self)
        # Everything loaded so far (models, settings, schemas) lives as long as the loop: out of
        # the garbage collector's sight, it is not traversed again by every collection.
        gc.freeze()
        last_commit = time.monotonic()
        since_checkpoint = 0
        try:
            while not self._stopping:
                if heartbeat is not None:
                    heartbeat()
                inputs = self._read()
                if inputs is None:
                    break  # a bounded source is exhausted
                if inputs:
                    self._idle_since = time.monotonic()
                    self._handle(inputs)
                    since_checkpoint += len(inputs)
                else:
                    self.inference.check()  # a worker that dies while the input is quiet
                self._release_late()
                if not inputs and o.flush_when_idle and not self.inference.pending():
                    # the input is quiet and the model idle: waiting would only add latency
                    for top, rows in self.batcher.drain():
                        self._score(top, rows, "idle")
                self._publish_scored()
                self.sink.poll(0)
                self._flush_metrics()
                self._reload()
                now = time.monotonic()
                if o.checkpoint_every is not None and since_checkpoint >= o.checkpoint_every:
                    self._checkpoint()
                    since_checkpoint, last_commit = 0, now
                elif now - last_commit >= o.commit_interval_s:
                    self._commit(wait_s=None)
                    last_commit = now
                self.metrics.record_in_flight(self.tracker.in_flight())
                if (
                    o.stop_after_idle_s is not None
                    and self._idle_since is not None  # not before an assignment or input
                    and now - self._idle_since >= o.stop_after_idle_s
                    and self.tracker.in_flight() == 0
                ):
                    log.info("idle_stop", idle_s=round(now - self._idle_since, 1))
                    break
        finally:
            self._shutdown()
        return self.stats

    def _read(self) -> list[Input] | None:
        """The next inputs (None: a bounded source is exhausted). While inference has batches
        and nothing is waiting to be read, the loop waits for their scores rather than for
        input: they are written, and the open batches released, as soon as they are back."""
        wait = self._wait_s()
        if not self.inference.pending():
            return self.source.read(self.options.max_rows, wait)
        inputs = self.source.read(self.options.max_rows, 0.0)
        if inputs == []:
            self._publish_scored(wait)
            inputs = self.source.read(self.options.max_rows, 0.0)
        return inputs

    def _wait_s(self) -> float:
        """How long a read may wait: not past the oldest open batch's deadline, and only
        briefly while outputs await their acknowledgements, batches their scores or (flushing
        when idle) open batches a quiet input."""
        waits = [IDLE_WAIT_S]
        deadline = self.batcher.seconds_to_deadline()
        if deadline is not None and (deadline > 0 or self._room()):  # else: the scores' poll
            waits.append(deadline)
        if (
            self.tracker.in_flight()
            or self.inference.pending()
            or (deadline is not None and self.options.flush_when_idle)
        ):
            waits.append(BUSY_POLL_S)
        return min(waits)

    def _room(self) -> int:
        """How many late batches inference takes now (see ``QUEUED_BATCHES``)."""
        return max(0, QUEUED_BATCHES - self.inference.pending())

    def _release_late(self) -> None:
        """The batches past their deadline to inference, oldest first, while it has room."""
        while self._room():
            late = self.batcher.due(limit=1)
            if not late:
                return
            ((top, rows),) = late
            self._score(top, rows, "deadline")

    def _shutdown(self) -> None:
        """Drain, commit and close within ``drain_timeout_s`` plus a few seconds, whatever the
        brokers do (down, frozen, slow): what is not written by then is not committed."""
        deadline = time.monotonic() + self.options.drain_timeout_s
        log.info(
            "service_draining", open_rows=len(self.batcher), in_flight=self.tracker.in_flight()
        )
        try:
            self._drain(deadline=deadline)
        except InferenceError as exc:  # what was not scored is not committed: it is redone
            log.error("inference_failed", error=str(exc), in_flight=self.tracker.in_flight())
        self._commit(wait_s=max(CLOSE_S, deadline - time.monotonic()))
        self.sink.checkpoint(self.source.state())
        self.processor.router.report()
        self.source.close(max(CLOSE_S, deadline - time.monotonic()))
        self.sink.close(max(CLOSE_S, deadline - time.monotonic()))
        self._on_ready(False)
        log.info(
            "service_stopped",
            consumed=self.stats.consumed,
            scored=self.stats.scored,
            dead_lettered=self.stats.dead_lettered,
            acknowledged=self.stats.acknowledged,
            left_in_flight=self.tracker.in_flight(),
            decoded=self.processor.decode_paths(),
        )

    def _drain(
        self, partitions: set[Partition] | None = None, deadline: float | None = None
    ) -> None:
        """Score open batches and wait (until ``deadline``, by default ``drain_timeout_s``
        from now) for the outputs of ``partitions`` (default: all) to be written."""
        if deadline is None:
            deadline = time.monotonic() + self.options.drain_timeout_s
        for top, rows in self.batcher.drain():
            self._score(top, rows, "drain")
        while self.inference.pending() and time.monotonic() < deadline:
            self._publish_scored(0.1)
        self.sink.flush(0)  # file sinks write their parts now

        def pending() -> int:
            if partitions is None:
                return self.tracker.in_flight()
            return sum(self.tracker.in_flight(tp) for tp in partitions)

        while pending() and time.monotonic() < deadline:
            self.sink.poll(0.1)
        self._flush_metrics()
        if pending():
            log.warning(
                "drain_timeout", unacknowledged=pending(), timeout_s=self.options.drain_timeout_s
            )

    def _checkpoint(self) -> None:
        """Drain everything, commit, and let the sink record the source's resumable state."""
        self._drain()
        self._commit(wait_s=self.options.drain_timeout_s)
        self.sink.checkpoint(self.source.state())

    # -- the consumer group's events (live source) ----------------------------------------

    def on_assigned(self, partitions: set[Partition]) -> None:
        self._idle_since = time.monotonic()  # the idle clock starts (again) here
        self.metrics.record_rebalance("assign")
        self._on_ready(True)
        log.info("partitions_assigned", partitions=sorted(f"{t}[{p}]" for t, p in partitions))

    def on_revoked(self, partitions: set[Partition]) -> None:
        self.metrics.record_rebalance("revoke")
        log.info(
            "partitions_revoked",
            partitions=sorted(f"{t}[{p}]" for t, p in partitions),
            scored=self.stats.scored,
            open_rows=len(self.batcher),
            in_flight=self.tracker.in_flight(),
        )
        deadline = time.monotonic() + self.options.drain_timeout_s
        self._drain(partitions, deadline)
        self._commit(wait_s=max(CLOSE_S, deadline - time.monotonic()), only=partitions)
        self._forget(partitions)

    def on_lost(self, partitions: set[Partition]) -> None:
        self.metrics.record_rebalance("lost")
        log.warning("partitions_lost", partitions=sorted(f"{t}[{p}]" for t, p in partitions))
        self._forget(partitions)

    def on_committed(self, positions: dict[Partition, int]) -> None:
        self.tracker.mark_committed(positions)
        log.debug("committed", positions={f"{t}[{p}]": o for (t, p), o in positions.items()})

    def _forget(self, partitions: set[Partition]) -> None:
        for tp in partitions:
            self.tracker.forget(tp)
            self.metrics.forget_partition(*tp)

    # -- inputs ----------------------------------------------------------------------------

    def _handle(self, inputs: list[Input]) -> None:
        """Decode and route inputs into the micro-batches; bad ones are dead letters."""
        self._on_read(len(inputs))
        if self.stats.first_consumed_at is None:
            self.stats.first_consumed_at = time.monotonic()
        started = time.perf_counter()
        results = self.processor.route(inputs)
        self._decode_seconds.append(time.perf_counter() - started)
        register, add = self.tracker.register, self.batcher.add
        per_row = self.sink.outputs_per_row  # a score, and the sink's companions of it
        keep = self.sink.keeps_inputs
        for item, result in zip(inputs, results, strict=True):
            tp = (item.source.topic, item.source.partition)
            if item.skipped:  # read but outside the replay's range: nothing to write
                register(tp, item.source.offset, outputs=0)
                continue
            self.stats.consumed += 1
            if isinstance(result, InputError):
                register(tp, item.source.offset, outputs=1)
                self._dead_letter(item, result)
                continue
            register(tp, item.source.offset, outputs=len(result) * per_row)
            headers = item.headers or None  # for a reference should its output be refused
            origin = item if keep else None
            for top, row in result:
                if headers is not None or origin is not None:  # (NamedTuple._replace: 2x slower)
                    row = Row(*row[:5], headers, origin, row.head)
                full = add(top, row)
                if full is not None:
                    self._score(top, full, "full")

    def _dead_letter(self, item: Input, error: InputError) -> None:
        source = item.source
        (log.warning if self.options.log_dead_letters else log.debug)(
            "dead_letter",
            reason=error.reason,
            error=str(error),
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
        )
        reasons = self.stats.by_reason
        reasons[error.reason] = reasons.get(error.reason, 0) + 1
        if reasons[error.reason] == 1:
            self.stats.first_dead_letter[error.reason] = (
                source.topic,
                source.partition,
                source.offset,
                str(error),
            )
        self.stats.dead_lettered += 1
        self.metrics.record_dead_letter(error.reason)
        self.sink.dead_letter(item, error)

    # -- scoring and writing ---------------------------------------------------------------

    def _score(self, top: str, rows: list[Row], reason: str) -> None:
        """Hand a released micro-batch to inference, and write what it has finished."""
        self.metrics.record_released(reason)
        self.inference.submit(top, [row.features for row in rows], rows)
        self._publish_scored()

    def _publish_scored(self, wait_s: float = 0.0) -> None:
        for scored in self.inference.completed(wait_s):
            top, rows = scored.top, scored.tag
            self._batch_id += 1
            batch = self.processor.scored_batch(
                top,
                rows,
                scored.raw,
                scored.percentile,
                scored.nearest,
                scored.seconds,
                scored.explanation,
            )
            device = self.processor.device
            self.metrics.record_stage("score", batch.seconds)
            self.metrics.record_batch(
                self.processor.survey.name,
                top,
                batch.columns["scorer"],
                device.type,
                batch.seconds,
                batch.raw,
                batch.percentile,
            )
            if device.type == "cuda":
                self.metrics.record_device_memory(str(device), scored.device_memory)
            self.sink.write(batch, rows)
            self.stats.scored += len(rows)
            self.stats.by_class[top] = self.stats.by_class.get(top, 0) + len(rows)
            log.debug(
                "batch_scored",
                batch_id=self._batch_id,
                top_class=top,
                rows=len(rows),
                seconds=round(batch.seconds, 6),
            )

    def _reload(self) -> None:
        """Between micro-batches: swap in a changed re-ranker (service.core.reranking) or
        changed bundles."""
        reload = self.processor.reranking.poll()
        if reload is not None:
            self.metrics.record_reload("reranker", reload.outcome)
            self.metrics.record_reranker(self.processor.reranking.current)
        if self._restart_inference is not None and self.processor.bundle_watch.changed():
            self._reload_bundles(self._restart_inference)

    def _reload_bundles(self, restart: Callable[[dict[str, Route]], Inference]) -> None:
        """Load the changed bundles; publish everything the old ones scored (under their
        versions); start the inference of the new ones, then score with them. Anything that
        fails keeps the old bundles and inference (logged, counted)."""
        old = {top: r.bundle.manifest.model_version for top, r in self.processor.routes.items()}

        def failed(error: str) -> None:
            log.error("bundles_reload_failed", error=error, kept=old)
            self.metrics.record_reload("bundles", "failed")

        try:
            routes = self.processor.load_changed_routes()
        except Exception as exc:  # a half-copied or wrong bundle: the old ones score on
            failed(str(exc))
            return
        self._drain()
        if self.inference.pending():
            failed("the old models' batches were not all scored in time")
            return
        try:
            self.inference = restart(routes)
        except Exception as exc:
            failed(f"the new inference did not start: {exc}")
            return
        self.processor.swap_routes(routes)
        new = {top: r.bundle.manifest.model_version for top, r in routes.items()}
        log.info(
            "bundles_reloaded",
            models=new,
            checksums={top: r.bundle.checksum for top, r in routes.items()},
            previous=old,
        )
        self.metrics.record_reload("bundles", "reloaded")
        self.metrics.record_models(routes.values())

    # -- committing ------------------------------------------------------------------------

    def _commit(self, wait_s: float | None, only: set[Partition] | None = None) -> None:
        """Commit written positions. Periodic commits do not wait (``wait_s`` None: an outage
        must not block the loop; failures are retried at the next interval); revocation,
        checkpoints and the end wait at most ``wait_s`` for the result."""
        positions = {
            tp: pos for tp, pos in self.tracker.committable().items() if only is None or tp in only
        }
        if positions:
            self.source.commit(positions, wait_s)

    def _flush_metrics(self) -> None:
        """Metrics gathered per input, recorded in bulk once per loop."""
        if self._decode_seconds:
            self.metrics.record_stage("decode", self._decode_seconds)
            self._decode_seconds = []
        self.metrics.record_coverage(
            self.processor.survey.name, self.processor.router.take_coverage()
        )
        paths = self.processor.decode_paths()
        for path, n in paths.items():
            if n > self._decoded.get(path, 0):
                self.metrics.record_decoded(path, n - self._decoded.get(path, 0))
        self._decoded = paths
