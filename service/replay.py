"""Replays and offline scoring: the live service's loop (:class:`Engine`) with a bounded source
(a topic range, files, tables) and a sink (a topic, a resumable Parquet dataset, memory).

Bad inputs are dead letters (to the dead-letter topic, or a Parquet part next to the scores),
never fatal. A Parquet replay checkpoints every ``checkpoint_every`` inputs: what was read is
scored and written, and the source's position saved with the parts, so an interrupted replay
resumes without duplicates or gaps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tqdm import tqdm

from models.exceptions import DataError
from service.config import Settings
from service.engine import Engine, Options, Stats
from service.exceptions import KafkaServiceError
from service.metrics import Metrics
from service.offsets import OffsetTracker
from service.processing import AlertProcessor, Inference, start_inference
from service.sinks import OutputSink
from service.sources import InputSource

BATCH_DELAY_S = 60.0  # replays fill their batches; the end of the input drains them


@dataclass(frozen=True)
class Summary:
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


def replay(
    processor: AlertProcessor,
    inference: Inference,
    source: InputSource,
    sink: OutputSink,
    tracker: OffsetTracker,
    batch_rows: int = 1024,
    drain_timeout_s: float = 120.0,
    checkpoint_every: int = 5000,
    progress: str | None = "replay",
) -> Summary:
    """Score every input of ``source`` into ``sink``; ``progress`` labels the progress bar
    (None: no bar). Raises KafkaServiceError when outputs stay unwritten at the end."""
    options = Options(
        max_rows=batch_rows,
        max_delay_s=BATCH_DELAY_S,
        commit_interval_s=float("inf"),
        drain_timeout_s=drain_timeout_s,
        checkpoint_every=checkpoint_every,
        log_dead_letters=False,  # summarised by the command (service.offline)
    )
    read = 0

    def count(n: int) -> None:
        nonlocal read
        read += n
        if bar.total is not None and read > bar.total:
            bar.total = read  # the estimate was short (watermarks, a growing topic)
        bar.update(n)

    bar = tqdm(total=source.total(), unit="msg", disable=progress is None, desc=progress)
    engine = Engine(processor, inference, source, sink, tracker, options, Metrics(), on_read=count)
    started = time.monotonic()
    try:
        stats: Stats = engine.run()
        bar.total = read  # the range's true size, now known: the bar ends full
        bar.refresh()
    finally:
        bar.close()
    if tracker.in_flight():
        raise KafkaServiceError(f"{tracker.in_flight()} inputs have outputs that were not written")
    return Summary(
        read,
        stats.scored,
        stats.dead_lettered,
        time.monotonic() - started,
        dict(stats.by_reason),
        dict(stats.first_dead_letter),
    )


def replay_with_settings(
    settings: Settings,
    processor: AlertProcessor,
    source: InputSource,
    sink: OutputSink,
    tracker: OffsetTracker,
    batch_rows: int | None = None,
    progress: str | None = "replay",
) -> Summary:
    """:func:`replay` with the configured inference (a worker process on 2+ cores)."""
    rows = batch_rows or settings.batch.max_rows
    inference = start_inference(settings, processor.routes, rows)
    try:
        return replay(
            processor,
            inference,
            source,
            sink,
            tracker,
            batch_rows=rows,
            drain_timeout_s=settings.drain_timeout_s,
            progress=progress,
        )
    finally:
        inference.close()


def parse_time_ms(text: str) -> int:
    """ISO-8601 (UTC if no zone) or epoch milliseconds -> epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"cannot read {text!r} as a time (ISO-8601 or epoch ms)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
