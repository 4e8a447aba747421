"""Liveness and readiness (:class:`Health`) and the HTTP server of ``/metrics``, ``/healthz`` and
``/readyz`` (:class:`MetricsServer`); the metric families are :mod:`service.ops.metrics`."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from service.config import Settings
    from service.ops.metrics import Metrics

# /healthz fails when the main loop has not ticked for this long, or (a longer drain_timeout_s)
# for drain_timeout_s + STALE_MARGIN_S
STALE_AFTER_S = 60.0
STALE_MARGIN_S = 30.0


class Health:
    """Liveness (the main loop ticks) and readiness (models loaded, partitions assigned, a
    broker answers).

    The loop ticks every half second or so while it runs, in a broker outage too, and so does
    the wait for brokers at start: liveness fails only when it has not ticked for longer than
    any wait by design (see :meth:`for_settings`), never because brokers are away (the service
    gives up on them by itself after ``kafka.unavailable_timeout_s``, exit status 2 or 3).
    Readiness fails at once while no broker answers."""

    def __init__(self, stale_after_s: float = STALE_AFTER_S) -> None:
        self.stale_after_s = stale_after_s
        self.last_tick = time.monotonic()
        self.ready = False
        self.brokers_available = True

    @classmethod
    def for_settings(cls, settings: Settings) -> Health:
        """Stale after :data:`STALE_AFTER_S`, or longer than a drain (``drain_timeout_s``: a
        revocation drains without ticking) by :data:`STALE_MARGIN_S`."""
        return cls(max(STALE_AFTER_S, settings.drain_timeout_s + STALE_MARGIN_S))

    def is_ready(self) -> bool:
        return self.ready and self.brokers_available

    def tick(self) -> None:
        self.last_tick = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_tick < self.stale_after_s


class MetricsServer:
    """A small threaded HTTP server for /metrics, /healthz and /readyz."""

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        registry = metrics.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = health.alive()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
                elif path == "/readyz":
                    ok = health.is_ready()
                    self._send(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes are not worth a log line each

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
