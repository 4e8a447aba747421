"""``alert-anomaly run``: the streaming scoring service."""

from __future__ import annotations

import argparse
import faulthandler
import io
import queue
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from models.exceptions import ConfigurationError
from service.commands.args import SETTING_FLAGS, add_setting_flags, examples, settings_of
from service.config import Settings
from service.exceptions import SettingsError

if TYPE_CHECKING:  # the service's modules load torch: only when the command runs
    from service.live import ScoringService
    from service.ops.health import Health, MetricsServer

log = structlog.get_logger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "run",
        epilog=examples(
            "alert-anomaly run --bootstrap-servers kafka:9092 --topic "
            "'^lc_classifier_ztf_[0-9]{8}$'",
            "alert-anomaly run --config alert-anomaly.toml --check",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="consume classifier records, score anomalies, produce scores (the service)",
        description=(
            "Run the streaming service. Settings come from --config (TOML or YAML), "
            "ALERT_ANOMALY_* environment variables and the options below (highest precedence); "
            "see the README's configuration reference. SIGTERM/SIGINT drain, commit and exit 0 "
            "(before the main loop - loading the models, waiting for brokers, starting the "
            "inference worker - they stop the start at once and exit 0)."
        ),
    )
    add_setting_flags(p, *SETTING_FLAGS)
    p.add_argument(
        "--check",
        action="store_true",
        help="check the settings, the models, the Kafka client properties, the brokers and the "
        "input topics, then exit",
    )
    p.add_argument(
        "--offline", action="store_true", help="with --check: no broker (settings and models)"
    )
    p.set_defaults(handler=run)


class StopRequested(BaseException):  # not an error: how a signal interrupts the start
    """SIGTERM/SIGINT before the main loop: the start stops where it is (nothing to drain)."""


REPORT_WAIT_S = 5.0  # how long the command waits for the signal's log line at its end


class Signals:
    """SIGTERM and SIGINT at every stage: before the main loop they interrupt the start
    (:class:`StopRequested`, raised where the main thread is); in it they ask the service to
    drain, commit and stop (the drain is bounded by ``drain_timeout_s``).

    The handler logs nothing itself: it runs in the main thread between two of its bytecodes,
    possibly inside a log call holding the log's lock, and would wait for that lock forever. It
    hands the line to a thread (``SimpleQueue.put`` is safe in a handler) that writes it when the
    lock is free; :meth:`close` waits for it. SIGUSR1 prints every thread's stack to stderr and
    the process goes on (a C-level handler: it answers even when the main thread is stuck)."""

    def __init__(self) -> None:
        self.service: ScoringService | None = None
        self.received: str | None = None
        self.received_in: str | None = None  # the stage the first signal came in
        self._reports: queue.SimpleQueue[dict[str, str] | None] = queue.SimpleQueue()
        self._reporter = threading.Thread(target=self._report, name="signal-log", daemon=True)
        self._reporter.start()
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)
        try:  # to the file descriptor of stderr: none when a caller swapped it for an object
            faulthandler.register(signal.SIGUSR1, all_threads=True)
        except (AttributeError, ValueError, io.UnsupportedOperation):
            log.debug("stack_dumps_unavailable", reason="stderr has no file descriptor")

    def _report(self) -> None:
        while (fields := self._reports.get()) is not None:
            log.info("signal_received", **fields)

    def close(self) -> None:
        """Write the signal's line if one came (waits at most :data:`REPORT_WAIT_S`)."""
        self._reports.put(None)
        self._reporter.join(REPORT_WAIT_S)

    @property
    def stage(self) -> str:
        return self.service.stage if self.service is not None else "loading_models"

    def interrupted_the_start(self) -> bool:
        """A signal came before the main loop (it raised :class:`StopRequested` there)."""
        return self.received_in is not None and self.received_in not in ("running", "stopped")

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is None:
            self.received_in = self.stage
            self._reports.put({"signal": name, "stage": self.stage})
        self.received = name
        if self.service is not None and self.service.stage in ("running", "stopped"):
            self.service.stop()
            return
        raise StopRequested(name)


def serve(settings: Settings, service: ScoringService, health: Health) -> MetricsServer | None:
    from service.ops.health import MetricsServer

    if settings.metrics_port is None:
        return None
    try:
        server = MetricsServer(service.metrics, health, "0.0.0.0", settings.metrics_port).start()
    except OSError as exc:
        raise SettingsError(
            f"metrics_port {settings.metrics_port}: cannot listen ({exc.strerror}); choose "
            "another port (0: any free one)"
        ) from None
    log.info("metrics_serving", url=f"http://127.0.0.1:{server.port}/metrics")
    return server


def run(args: argparse.Namespace) -> int:
    signals = None if args.check else Signals()  # first: the imports below take seconds
    try:
        return _run(args, signals)
    except StopRequested:
        assert signals is not None
        signals.close()
        log.info("stopped_before_start", signal=signals.received, stage=signals.received_in)
        return 0
    except Exception as exc:
        if signals is None or not signals.interrupted_the_start():
            raise
        # the signal's exception raised inside a library's C code (torch, safetensors) comes
        # back as that library's error: after a stop request at the start, that is the stop
        signals.close()
        log.info(
            "stopped_before_start",
            signal=signals.received,
            stage=signals.received_in,
            interrupted=f"{type(exc).__name__}: {exc}",
        )
        return 0
    finally:
        if signals is not None:
            signals.close()


def _run(args: argparse.Namespace, signals: Signals | None) -> int:
    settings = settings_of(args)  # before the imports: a settings error comes in a blink
    from service.live import ScoringService
    from service.ops.health import Health
    from service.ops.metrics import Metrics

    metrics, health = Metrics(), Health.for_settings(settings)
    if not args.check:  # a check's report is its output; debug: an error line stays alone
        log.debug(
            "loading_models",
            survey=settings.model.survey,
            scorers=dict(settings.model.scorers),
            bundles_dir=str(settings.model.bundles_dir),
        )

    def ready(state: bool) -> None:
        health.ready = state

    def brokers(available: bool) -> None:
        health.brokers_available = available

    service = ScoringService(settings, metrics, on_ready=ready, on_brokers=brokers)
    if signals is not None:
        signals.service = service
    if args.check:
        for line in service.check(offline=args.offline):
            print(line)
        print(
            "check passed" + (" (offline: brokers and topics not checked)" if args.offline else "")
        )
        return 0
    if args.offline:
        raise ConfigurationError("--offline goes with --check")
    server = serve(settings, service, health)
    try:
        service.run(heartbeat=health.tick)
    finally:
        if server is not None:
            server.stop()
    return 0
