"""The live service: the consumer group (:class:`KafkaSource`), the processor, inference, the score
and dead-letter topics (:class:`KafkaSink`) and the loop that drives them (:class:`Engine`)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from service import __version__
from service.config import ENV_PREFIX, Settings
from service.core.engine import Engine, Options, Stats
from service.core.offsets import OffsetTracker
from service.core.processing import AlertProcessor, Inference, start_inference
from service.exceptions import SettingsError
from service.io.sinks.kafka import KafkaSink
from service.io.sources.kafka import KafkaSource
from service.ops.availability import Brokers
from service.ops.metrics import Metrics

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_S = 15.0  # how long `run --check` waits for a broker
# SIGTERM/SIGINT before the main loop (loading the models, waiting for brokers, starting the
# inference worker) end the process within this; in the loop, within drain_timeout_s + this
STOP_MARGIN_S = 15.0
CLOSE_AT_START_S = 2.0  # closing the clients when start-up is interrupted or fails


def engine_options(settings: Settings) -> Options:
    return Options(
        max_rows=settings.batch.max_rows,
        max_delay_s=settings.batch.max_delay_ms / 1000,
        flush_when_idle=settings.batch.flush_when_idle,
        commit_interval_s=settings.commit_interval_ms / 1000,
        drain_timeout_s=settings.drain_timeout_s,
        stop_after_idle_s=settings.stop_after_idle_s,
    )


class ScoringService:
    """The service; ``run()`` blocks until ``stop()`` (signal-safe) or the idle limit. The
    models are loaded on construction (``run --check`` stops there); Kafka clients and the
    inference worker start in ``run()``. ``stage`` says where it is (``loading_models``,
    ``waiting_for_brokers``, ``starting_inference``, ``running``; ``stopped``), each logged as
    it begins (``loading_models`` by the ``run`` command, ``waiting_for_brokers`` only when they
    do not answer at once): until ``running``, a stop has nothing to drain and the caller
    interrupts the start instead (``service.commands.run.Signals``)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        on_ready: Callable[[bool], None] | None = None,
        on_brokers: Callable[[bool], None] | None = None,
    ) -> None:
        if not settings.input.topics:
            raise SettingsError(
                "invalid settings: no input topics: set --topic, [input] topics in the config "
                f"file or {ENV_PREFIX}INPUT__TOPICS (a JSON list)"
            )
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stage = "loading_models"
        self.processor = AlertProcessor(settings)
        self.routes = self.processor.routes
        for r in self.routes.values():
            m = r.bundle.manifest
            self.metrics.record_model(
                m.survey, m.top_class, m.scorer, m.model_version, r.bundle.checksum
            )
        self.tracker = OffsetTracker()
        self._on_ready = on_ready

        def brokers_changed(available: bool) -> None:
            self.metrics.record_brokers(available)
            if on_brokers is not None:
                on_brokers(available)

        self.brokers = Brokers(
            settings.kafka.bootstrap_servers, settings.kafka.unavailable_timeout_s, brokers_changed
        )
        self._engine: Engine | None = None
        self._stopping = False

    @property
    def inference_pid(self) -> int | None:
        """The inference worker's process id while the service runs (None: inline)."""
        engine = self._engine
        return getattr(engine.inference, "pid", None) if engine is not None else None

    @property
    def stats(self) -> Stats:
        return self._engine.stats if self._engine is not None else Stats(tracker=self.tracker)

    def stop(self) -> None:
        """Ask the loop to drain, commit and return (safe from a signal handler)."""
        self._stopping = True
        if self._engine is not None:
            self._engine.stop()

    def check(self, offline: bool) -> list[str]:
        """What ``run --check`` reports, line by line: the models; the client properties (both
        clients are made); unless ``offline``, the brokers (waiting at most
        :data:`CHECK_TIMEOUT_S`) and the input topics."""
        lines = [f"models: {', '.join(r.bundle.name for r in self.routes.values())}"]
        kafka = self.settings.kafka
        brokers = Brokers(
            kafka.bootstrap_servers,
            min(CHECK_TIMEOUT_S, kafka.unavailable_timeout_s),
            quiet=offline,  # offline, the clients are made and closed: no broker is expected
        )
        source = KafkaSource(self.settings, self.metrics, brokers)
        try:
            KafkaSink(self.settings, self.metrics, self.tracker.written, brokers).close()
            lines.append("Kafka client properties: accepted by librdkafka")
            if not offline:
                found = source.check_topics()
                lines.append(f"brokers: {self.settings.kafka.bootstrap_servers} answered")
                lines += [
                    f"input {name}: {', '.join(topics) or 'no topic matches yet'}"
                    for name, topics in found.items()
                ]
        finally:
            source.close()
        return lines

    def run(self, heartbeat: Callable[[], None] | None = None) -> Stats:
        """Start the clients and the inference worker, then run the loop. ``heartbeat`` is
        called by the loop and while waiting for brokers at start (liveness). An exception at
        start (an error, or the caller's interruption on a signal) closes what was started."""
        s = self.settings
        self.brokers.heartbeat = heartbeat
        source = KafkaSource(s, self.metrics, self.brokers)
        sink: KafkaSink | None = None
        inference: Inference | None = None
        try:
            self.stage = "waiting_for_brokers"  # logged by Brokers when they do not answer
            topics = source.check_topics()
            sink = KafkaSink(s, self.metrics, self.tracker.written, self.brokers)
            self.stage = "starting_inference"
            log.info(
                "starting_inference", mode=s.model.inference, device=str(self.processor.device)
            )
            inference = start_inference(s, self.routes)
            log.info(
                "service_starting",
                version=__version__,
                topics=s.input.topics,
                group_id=s.input.group_id,
                output=s.output.topic,
                dead_letter=s.output.dead_letter_topic,
                device=str(self.processor.device),
                inference_pid=getattr(inference, "pid", None),  # None: inline
                models={t: r.bundle.name for t, r in self.routes.items()},
                input_topics=topics,
            )
            self._engine = Engine(
                self.processor,
                inference,
                source,
                sink,
                self.tracker,
                engine_options(s),
                self.metrics,
                on_ready=self._on_ready,
            )
            self.stage = "running"  # from here on, a stop drains
        except BaseException:
            self.stage = "stopped"
            if inference is not None:
                inference.close()
            source.close(CLOSE_AT_START_S)
            if sink is not None:
                sink.close(CLOSE_AT_START_S)
            raise
        if self._stopping:
            self._engine.stop()
        try:
            return self._engine.run(heartbeat)
        finally:
            self.stage = "stopped"
