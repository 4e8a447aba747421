"""``alert-anomaly run``'s signals before the main loop, without I/O: a stop request raised
inside a library that turns it into its own error (torch does, loading weights) still ends the
start cleanly; the same error without a signal stays an error; a signal that lands while a log
line is being written is logged, not a deadlock."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from service.commands import run as run_command


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def library_call_interrupted_by(signum: int | None) -> None:
    """Like C code calling back into Python: whatever the callback raised becomes a ValueError."""
    try:
        if signum is not None:
            os.kill(os.getpid(), signum)  # the handler runs here, in the main thread
        raise ValueError("could not determine the shape of object type 'UntypedStorage'")
    except BaseException as exc:
        raise ValueError(f"could not determine the shape: {exc!r}") from None


def args() -> argparse.Namespace:
    return argparse.Namespace(check=False, offline=False)


@pytest.mark.usefixtures("restore_handlers")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_turned_into_a_library_error_while_loading_is_a_stop(
    monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    monkeypatch.setattr(
        run_command, "_run", lambda args, signals: library_call_interrupted_by(signum)
    )
    assert run_command.run(args()) == 0


@pytest.mark.usefixtures("restore_handlers")
def test_run_starts_with_a_stderr_that_has_no_file_descriptor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A caller that swapped stderr for an object (a notebook, a test's capture) still runs
    the service; only SIGUSR1's stack dumps, which need a descriptor, are not offered."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setattr(run_command, "_run", lambda args, signals: 0)
    assert run_command.run(args()) == 0


@pytest.mark.usefixtures("restore_handlers")
def test_the_same_error_without_a_signal_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        run_command, "_run", lambda args, signals: library_call_interrupted_by(None)
    )
    with pytest.raises(ValueError, match="could not determine the shape"):
        run_command.run(args())


@pytest.mark.usefixtures("restore_handlers")
def test_an_error_after_a_signal_in_the_main_loop_stays_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the main loop a signal asks for a drain; a later failure is the service's own."""

    class Running:
        stage = "running"

        def stop(self) -> None:
            pass

    def main_loop(args: argparse.Namespace, signals: run_command.Signals) -> int:
        signals.service = Running()  # type: ignore[assignment]
        os.kill(os.getpid(), signal.SIGTERM)
        raise RuntimeError("the sink failed")

    monkeypatch.setattr(run_command, "_run", main_loop)
    with pytest.raises(RuntimeError, match="the sink failed"):
        run_command.run(args())


# A process whose first log line is interrupted by SIGTERM: the handler runs inside that
# line's write, where structlog holds its (non-reentrant) lock.
SIGNAL_DURING_A_LOG_LINE = """
import argparse, os, signal, sys
import structlog
from service.commands import run as run_command
from service.ops.logs import configure_logging

class InterruptedOnce:
    def __init__(self, real):
        self.real, self.fired = real, False
    def write(self, text):
        written = self.real.write(text)
        if not self.fired:
            self.fired = True
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before write returns
        return written
    def flush(self):
        self.real.flush()

def start(args, signals):
    configure_logging("json", "info")
    sys.stderr = InterruptedOnce(sys.stderr)
    structlog.get_logger("test").info("loading")
    raise AssertionError("the signal did not stop the start")

run_command._run = start
sys.exit(run_command.run(argparse.Namespace(check=False, offline=False)))
"""


def test_a_signal_during_a_log_line_is_logged_without_a_deadlock() -> None:
    """The handler used to log the signal itself and waited for the lock the interrupted line
    held, forever (the service ignored SIGTERM until Kubernetes killed it)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", SIGNAL_DURING_A_LOG_LINE],
            capture_output=True,
            text=True,
            timeout=120,  # a deadlock never ends: any bound tells it from a slow start
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"deadlocked; stderr:\n{exc.stderr!r}") from None
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert events == ["loading", "signal_received", "stopped_before_start"], done.stderr
