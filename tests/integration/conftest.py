"""Helpers for tests that run ``alert-anomaly run`` as a real process against the test broker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "service.cli", "--log-format", "json"]
TEST_CONSUMER = json.dumps({"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"})


def children(pid: int) -> set[int]:
    """The process ids of ``pid``'s children (Linux: /proc/PID/task/*/children)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited


def still_running(pids: set[int], wait_s: float) -> set[int]:
    """Those of ``pids`` still running after up to ``wait_s`` (returns as soon as none is)."""
    deadline = time.monotonic() + wait_s
    left = {pid for pid in pids if running(pid)}
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = {pid for pid in left if running(pid)}
    return left


class ServiceProcess:
    """`alert-anomaly run` in a subprocess; its JSON log events are collected as they come."""

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, log_level: str = "info"
    ) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.process = subprocess.Popen(
            [*CLI, "--log-level", log_level, "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "ALERT_ANOMALY_KAFKA__CONSUMER": TEST_CONSUMER,
                "ALERT_ANOMALY_COMMIT_INTERVAL_MS": "200",
                **(env or {}),
            },
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.raw.append(line)
            with contextlib.suppress(json.JSONDecodeError):  # librdkafka's own lines
                self.events.append(json.loads(line))

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if predicate(event):
                    return event
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        tail = "".join(self.raw[-20:])
        raise AssertionError(
            f"event not seen within {timeout} s; log tail:\n{tail}\nstacks:\n{self.stacks()}"
        )

    def stacks(self, pid: int | None = None, timeout: float = 10.0) -> str:
        """Every thread's stack, as a live service (or its inference worker: ``pid``) prints it
        on SIGUSR1 (for failure messages: where a process that did not do what was expected
        is); "" once the service has exited."""
        if self.process.poll() is not None:
            return ""
        start = len(self.raw)
        os.kill(pid or self.process.pid, signal.SIGUSR1)
        deadline, seen = time.monotonic() + timeout, start
        while time.monotonic() < deadline:
            time.sleep(0.5)  # the dump is written at once: done when no line came meanwhile
            if seen != start and len(self.raw) == seen:
                break
            seen = len(self.raw)
        return "".join(self.raw[start:])

    def event(self, name: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("event") == name, timeout)

    def assigned(self, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_for(
            lambda e: e.get("event") == "partitions_assigned" and bool(e.get("partitions")),
            timeout,
        )

    def metric(self, name: str, timeout: float = 60.0) -> float:
        """Current value of a metric (summed over its label sets) from the process's /metrics."""
        url = self.event("metrics_serving", timeout)["url"]
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and line[len(name)] in " {"
        )

    def wait_for_metric(self, name: str, minimum: float, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.metric(name)
            if value >= minimum:
                return value
            time.sleep(0.02)
        raise AssertionError(f"{name} stayed below {minimum} for {timeout} s")

    def terminate(self, timeout: float = 90.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)
        self._reader.join(5)


@pytest.fixture
def service_process() -> Iterator[Callable[..., ServiceProcess]]:
    """Factory of service processes; any still running at the end is killed."""
    started: list[ServiceProcess] = []

    def start(
        *args: str, env: dict[str, str] | None = None, log_level: str = "info"
    ) -> ServiceProcess:
        proc = ServiceProcess(list(args), env, log_level)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.process.poll() is None:
            proc.kill()
