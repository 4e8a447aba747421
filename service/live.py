"""The live service, a preset of the pipeline (:mod:`service.pipeline`): a consumer group
(``input.kind`` kafka), a sink that writes as it goes (``output.kind`` kafka by default), the
processor, inference and the loop (:class:`Engine`) with the live options."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from service import __version__
from service.config import ENV_PREFIX, Settings
from service.core.engine import Stats
from service.exceptions import SettingsError
from service.io.sinks import OutputSink
from service.io.sinks.kafka import KafkaSink
from service.io.sources.kafka import KafkaSource
from service.ops.availability import Brokers
from service.ops.metrics import Metrics
from service.pipeline import Pipeline, live_options
from service.registry import SINKS, SOURCES

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_S = 15.0  # how long `run --check` waits for a broker
# SIGTERM/SIGINT before the main loop (loading the models, waiting for brokers, starting the
# inference worker) end the process within this; in the loop, within drain_timeout_s + this
STOP_MARGIN_S = 15.0
CLOSE_AT_START_S = 2.0  # closing the clients when start-up is interrupted or fails


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
        _check_live_kinds(settings)
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stage = "loading_models"
        self._on_ready = on_ready

        def brokers_changed(available: bool) -> None:
            self.metrics.record_brokers(available)
            if on_brokers is not None:
                on_brokers(available)

        brokers = Brokers(
            settings.kafka.bootstrap_servers, settings.kafka.unavailable_timeout_s, brokers_changed
        )
        self.pipeline = Pipeline(settings, self.metrics, brokers)
        self.processor = self.pipeline.processor
        self.routes = self.processor.routes
        for r in self.routes.values():
            m = r.bundle.manifest
            self.metrics.record_model(
                m.survey, m.top_class, m.scorer, m.model_version, r.bundle.checksum
            )
        self._stopping = False

    @property
    def inference_pid(self) -> int | None:
        """The inference worker's process id while the service runs (None: inline)."""
        return self.pipeline.inference_pid

    @property
    def stats(self) -> Stats:
        engine = self.pipeline.engine
        return engine.stats if engine is not None else Stats(tracker=self.pipeline.tracker)

    def stop(self) -> None:
        """Ask the loop to drain, commit and return (safe from a signal handler)."""
        self._stopping = True
        if self.pipeline.engine is not None:
            self.pipeline.engine.stop()

    def check(self, offline: bool) -> list[str]:
        """What ``run --check`` reports, line by line: the models; the client properties (the
        source and the sink are made); unless ``offline``, the brokers (waiting at most
        :data:`CHECK_TIMEOUT_S`) and the input topics."""
        lines = [f"models: {', '.join(r.bundle.name for r in self.routes.values())}"]
        kafka = self.settings.kafka
        brokers = Brokers(
            kafka.bootstrap_servers,
            min(CHECK_TIMEOUT_S, kafka.unavailable_timeout_s),
            quiet=offline,  # offline, the clients are made and closed: no broker is expected
        )
        checking = Pipeline(self.settings, self.metrics, brokers, self.processor)
        source = _consumer_group(checking)
        try:
            checking.make_sink().close()
            lines.append("Kafka client properties: accepted by librdkafka")
            if not offline:
                found = source.check_topics()
                lines.append(f"brokers: {kafka.bootstrap_servers} answered")
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
        s, pipeline = self.settings, self.pipeline
        pipeline.brokers.heartbeat = heartbeat
        source = _consumer_group(pipeline)
        sink: OutputSink | None = None
        try:
            self.stage = "waiting_for_brokers"  # logged by Brokers when they do not answer
            topics = source.check_topics()
            sink = pipeline.make_sink()
            self.stage = "starting_inference"
            log.info(
                "starting_inference", mode=s.model.inference, device=str(self.processor.device)
            )
            engine = pipeline.start(source, sink, live_options(s), on_ready=self._on_ready)
            today = sink.topics() if isinstance(sink, KafkaSink) else None  # daily: today's
            log.info(
                "service_starting",
                version=__version__,
                topics=s.input.topics,
                group_id=s.input.group_id,
                output=today.scores if today else s.output.kind,
                dead_letter=today.dead_letters if today else None,
                device=str(self.processor.device),
                inference_pid=pipeline.inference_pid,  # None: inline
                models={t: r.bundle.name for t, r in self.routes.items()},
                input_topics=topics,
            )
            self.stage = "running"  # from here on, a stop drains
        except BaseException:
            self.stage = "stopped"
            pipeline.close_inference()
            source.close(CLOSE_AT_START_S)
            if sink is not None:
                sink.close(CLOSE_AT_START_S)
            raise
        if self._stopping:
            engine.stop()
        try:
            return pipeline.run(heartbeat)
        finally:
            self.stage = "stopped"


def _check_live_kinds(settings: Settings) -> None:
    """The live service reads a consumer group and writes as it goes (no checkpoints)."""
    source, sink = settings.input.kind, settings.output.kind
    if not SOURCES[source].live:
        raise SettingsError(
            f"invalid settings: input.kind {source} is bounded: `run` reads a consumer group "
            f"(input.kind {', '.join(k for k, v in SOURCES.items() if v.live)}); replay or score "
            "read bounded inputs"
        )
    if not SINKS[sink].live:
        raise SettingsError(
            f"invalid settings: output.kind {sink} needs checkpoints: `run` writes to "
            f"{', '.join(k for k, v in SINKS.items() if v.live)}; replay writes Parquet"
        )


def _consumer_group(pipeline: Pipeline) -> KafkaSource:
    source = pipeline.make_source()
    assert isinstance(source, KafkaSource)  # the only live source (checked at construction)
    return source
