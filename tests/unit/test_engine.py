"""When the engine releases micro-batches: a scripted source and an inference that can be held
busy, with the shipped models and a deadline that never passes during a test (no clocks)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from service.config import Settings, load_settings
from service.core.engine import BUSY_POLL_S, QUEUED_BATCHES, Engine, Options
from service.core.inference import InlineInference
from service.core.offsets import OffsetTracker
from service.core.processing import AlertProcessor
from service.demo import sample_messages
from service.io.sinks.files import CollectingSink
from service.ops.metrics import Metrics
from service.records import Input, Lineage, Partition, Row

NEVER_S = 3600.0  # a batch deadline no test reaches


class ScriptedSource:
    """Returns the scripted reads in order (a list of inputs each; [] = nothing arrived), then
    None (exhausted); counts the reads."""

    def __init__(self, reads: list[list[Input]]) -> None:
        self.reads = reads
        self.count = 0

    def start(self, listener: Any) -> None:
        """Nothing to open."""

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        self.count += 1
        return self.reads.pop(0) if self.reads else None

    def commit(self, positions: dict[Partition, int], wait_s: float | None) -> None:
        """Nothing to commit to."""

    def state(self) -> dict[str, Any]:
        return {}

    def total(self) -> int | None:
        return None

    def close(self, timeout_s: float = 10.0) -> None:
        """Nothing to release."""


class HeldInference(InlineInference[list[Row]]):
    """Inline scoring that reports ``busy`` more batches as being scored; logs every release
    as (reads so far, class, rows) and how long each call for scores may wait."""

    def __init__(self, processor: AlertProcessor, source: ScriptedSource) -> None:
        super().__init__({top: r.scorer for top, r in processor.routes.items()})
        self.source = source
        self.busy = 0
        self.released: list[tuple[int, str, int]] = []
        self.waits: list[float] = []

    def submit(self, top: str, features: Any, tag: list[Row]) -> None:
        self.released.append((self.source.count, top, len(features)))
        super().submit(top, features, tag)

    def completed(self, wait_s: float = 0.0) -> list[Any]:
        self.waits.append(wait_s)
        return super().completed(wait_s)

    def pending(self) -> int:
        return super().pending() + self.busy


class Reasons(Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.reasons: list[str] = []

    def record_released(self, reason: str) -> None:
        super().record_released(reason)
        self.reasons.append(reason)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(None, {"model": {"inference": "inline"}, "metrics_port": None})


@pytest.fixture(scope="module")
def processor(settings: Settings) -> AlertProcessor:
    return AlertProcessor(settings)


def inputs(first: int, n: int) -> list[Input]:
    messages = list(sample_messages(first + n))[first:]
    return [Input(Lineage("in", 0, first + i, None), k, v) for i, (k, v) in enumerate(messages)]


def idle_options(flush_when_idle: bool) -> Options:
    """Batches of up to 1024 rows whose deadline no test reaches."""
    return Options(
        max_rows=1024,
        max_delay_s=NEVER_S,
        commit_interval_s=NEVER_S,
        drain_timeout_s=1.0,
        flush_when_idle=flush_when_idle,
    )


def run(
    processor: AlertProcessor,
    reads: list[list[Input]],
    flush_when_idle: bool,
    busy: int = 0,
    max_delay_s: float = NEVER_S,
) -> tuple[HeldInference, Reasons, CollectingSink]:
    source = ScriptedSource(reads)
    inference = HeldInference(processor, source)
    inference.busy = busy
    metrics, tracker = Reasons(), OffsetTracker()
    sink = CollectingSink(tracker.written)
    options = replace(idle_options(flush_when_idle), max_delay_s=max_delay_s)
    Engine(processor, inference, source, sink, tracker, options, metrics).run()
    return inference, metrics, sink


def test_a_quiet_read_releases_the_open_batches(processor: AlertProcessor) -> None:
    # 40 alerts in two reads, a quiet read, 30 more, a quiet read
    reads = [inputs(0, 20), inputs(20, 20), [], inputs(40, 30), []]
    inference, metrics, sink = run(processor, reads, flush_when_idle=True)
    assert len(sink.records) == 70
    first = [(top, n) for at, top, n in inference.released if at == 3]
    second = [(top, n) for at, top, n in inference.released if at == 5]
    assert sum(n for _, n in first) == 40  # both reads' alerts, released by the quiet read
    assert sum(n for _, n in second) == 30
    assert len(first) == len({top for top, _ in first}) > 1  # one batch per class
    assert len(inference.released) == len(first) + len(second)  # nothing left to drain
    assert set(metrics.reasons) == {"idle"}


def test_without_flush_when_idle_batches_wait_for_their_deadline(
    processor: AlertProcessor,
) -> None:
    reads = [inputs(0, 20), [], inputs(20, 30), []]
    inference, metrics, sink = run(processor, reads, flush_when_idle=False)
    assert len(sink.records) == 50
    # nothing before the end of the input (the deadline is an hour away): drained at the stop
    assert {at for at, _, _ in inference.released} == {5}
    assert set(metrics.reasons) == {"drain"}


def test_batches_keep_filling_while_a_batch_is_being_scored(processor: AlertProcessor) -> None:
    reads = [inputs(0, 20), [], inputs(20, 30), []]
    inference, metrics, sink = run(processor, reads, flush_when_idle=True, busy=1)
    assert len(sink.records) == 50
    assert {at for at, _, _ in inference.released} == {5}  # at the end of the input
    assert set(metrics.reasons) == {"drain"}


LATE_S = 1e-9  # a deadline every batch has passed when the loop next looks


def test_a_late_batch_goes_to_inference_at_once_while_it_has_room(
    processor: AlertProcessor,
) -> None:
    reads = [inputs(0, 20), inputs(20, 30), []]
    inference, metrics, sink = run(processor, reads, False, busy=1, max_delay_s=LATE_S)
    assert len(sink.records) == 50
    assert set(metrics.reasons) == {"deadline"}
    assert {at for at, _, _ in inference.released} == {1, 2}  # right after each read
    assert len(inference.released) > len({top for _, top, _ in inference.released})


def test_a_late_batch_waits_and_grows_while_inference_holds_two(
    processor: AlertProcessor,
) -> None:
    """With QUEUED_BATCHES in inference (one scored, one queued), a late batch is not handed
    over (it would only queue): it keeps taking rows, and the loop polls for scores instead
    of spinning on the passed deadline."""
    reads = [inputs(0, 20), inputs(20, 30), []]
    inference, metrics, sink = run(processor, reads, False, busy=QUEUED_BATCHES, max_delay_s=LATE_S)
    assert len(sink.records) == 50
    assert set(metrics.reasons) == {"drain"}  # released only when the input ended
    assert sum(n for _, _, n in inference.released) == 50
    assert len(inference.released) == len({top for _, top, _ in inference.released})  # grown
    assert BUSY_POLL_S in inference.waits  # the quiet read waited for scores, briefly


def test_full_batches_go_at_once(processor: AlertProcessor) -> None:
    source = ScriptedSource([inputs(0, 600)])
    inference = HeldInference(processor, source)
    metrics, tracker = Reasons(), OffsetTracker()
    options = Options(
        max_rows=50, max_delay_s=NEVER_S, commit_interval_s=NEVER_S, drain_timeout_s=1.0
    )
    sink = CollectingSink(tracker.written)
    Engine(processor, inference, source, sink, tracker, options, metrics).run()
    assert len(sink.records) == 600
    released = list(zip(metrics.reasons, inference.released, strict=True))
    assert all(at == 1 and n == 50 for why, (at, _, n) in released if why == "full")
    assert all(n < 50 for why, (_, _, n) in released if why == "drain")  # the rest, at the end
    assert metrics.reasons.count("full") >= 600 // 50 - 2  # at most one partial batch per class
    assert set(metrics.reasons) == {"full", "drain"}


class WaitingSource(ScriptedSource):
    """A scripted source that records each read's timeout and how many outputs the sink
    had written by then."""

    def __init__(self, reads: list[list[Input]], sink: CollectingSink) -> None:
        super().__init__(reads)
        self.sink = sink
        self.seen: list[tuple[float, int]] = []  # (timeout, outputs written)

    def read(self, max_inputs: int, timeout_s: float) -> list[Input] | None:
        self.seen.append((timeout_s, len(self.sink.records)))
        return super().read(max_inputs, timeout_s)


class DeferredInference(InlineInference[list[Row]]):
    """Scores when submitted but hands the scores back only to a caller that waits for them
    (as a worker process does); records those waits."""

    def __init__(self, processor: AlertProcessor) -> None:
        super().__init__({top: r.scorer for top, r in processor.routes.items()})
        self.waits: list[float] = []

    def completed(self, wait_s: float = 0.0) -> list[Any]:
        if wait_s <= 0:
            return []
        self.waits.append(wait_s)
        return super().completed(wait_s)


def test_with_batches_in_inference_the_loop_waits_for_their_scores_not_for_input(
    processor: AlertProcessor,
) -> None:
    tracker = OffsetTracker()
    sink = CollectingSink(tracker.written)
    source = WaitingSource([inputs(0, 20), [], [], []], sink)
    inference = DeferredInference(processor)
    Engine(processor, inference, source, sink, tracker, idle_options(True), Reasons()).run()
    # read 2 found nothing: the batches went to inference; read 3 (nothing waiting) did not
    # wait for input: the loop waited for the scores and wrote them before read 4
    (_, none_yet), (_, released), (not_waiting, before), (_, after), *_ = source.seen
    assert none_yet == released == before == 0
    assert not_waiting == 0.0
    assert inference.waits
    assert inference.waits[0] > 0
    assert after == 20


class ScoresOnly(CollectingSink):
    """A sink with two outputs per scored row (a score and a companion, as scribe commands)
    whose writes report the scores only: the companions are still in flight."""

    outputs_per_row = 2


def test_an_input_is_committable_only_when_every_output_of_its_rows_is_written(
    processor: AlertProcessor,
) -> None:
    source = ScriptedSource([inputs(0, 10)])
    tracker = OffsetTracker()
    sink = ScoresOnly(tracker.written)
    inference = InlineInference({top: r.scorer for top, r in processor.routes.items()})
    Engine(processor, inference, source, sink, tracker, idle_options(True), Metrics()).run()
    assert len(sink.records) == 10  # scored and written ...
    assert tracker.committable() == {}  # ... but no input has all its outputs
    assert tracker.in_flight() == 10
    assert (tracker.written_outputs, tracker.completed_inputs) == (10, 0)
    tracker.written([Lineage("in", 0, offset, None) for offset in range(10)])  # the companions
    assert tracker.committable() == {("in", 0): 10}
    assert (tracker.written_outputs, tracker.completed_inputs) == (20, 10)  # the demo waits on it
