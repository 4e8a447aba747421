"""Inference: each micro-batch scored by its top-level class's model, in a worker process of its
own (``model.inference = process``) or in the service's thread (``inline``).

On a CPU the networks are a large share of the work per alert (the paper's 512-256-128 layers),
and Python runs one thread at a time: inline, every batch's scoring holds up consuming and
decoding. In a worker process the two overlap on two cores. The worker is started as
``python -m service.core.inference`` with two file descriptors: a socket and a shared memory file.
The service writes a batch's features into a slot of the shared memory, sends the worker three
numbers over the socket and goes on; the worker scores them with the same :class:`Scorer` (same
chunks, so bitwise the same scores) and writes raw scores, percentiles and nearest-centre indices
back into the slot, and with ``model.explain_features`` = k > 0 each row's top-k feature indices
and contributions (models.explain; -1 for a row below ``model.explain_min_percentile``; k = 0:
the slots have no room for them, nothing is computed). A few slots keep both processes busy;
when all are taken, :meth:`ProcessInference.submit` waits for one.

The worker loads the bundles itself and checks their checksums against the service's. It ignores
SIGINT and SIGTERM (the service scores what it holds, then closes the socket) and exits when the
socket closes, so it never outlives the service. If it dies, the service gets an
:class:`InferenceError`: work whose scores were not written is not committed, and is redone.

Over 300 lines on purpose: both ends of one protocol (the slot layout, the three numbers, the
checks at start) - the service's client and the worker's loop - are kept side by side so that
neither can change without the other.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import mmap
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Generic, Literal, NamedTuple, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray

from models.bundle import load_bundle
from models.explain import Explanation
from models.scoring import Scorer, resolve_device
from service.exceptions import InferenceError

T = TypeVar("T")
InferenceMode = Literal["auto", "process", "inline"]

SLOTS = 3  # batches in the worker's hands at once: one scored, one queued, one being written
START_TIMEOUT_S = 300.0  # importing torch and loading the bundles
ANSWER_TIMEOUT_S = 120.0  # longest wait for a batch (a full one takes well under a second)


class Scored(NamedTuple, Generic[T]):
    """The scores of one submitted batch, with what the caller tagged it with."""

    top: str
    tag: T
    raw: NDArray[np.float32]
    percentile: NDArray[np.float32]
    nearest: NDArray[np.int64]  # index of the nearest centre (0 with one centre)
    seconds: float  # inference time
    device_memory: int  # bytes allocated on a CUDA device after the batch (0 on the CPU)
    explanation: Explanation | None = None  # each row's top features (explanations on)


@dataclass(frozen=True)
class ModelFile:
    """A model as the worker loads it: from ``path``, with the checksum the service verified."""

    top: str
    path: Path
    checksum: str
    n_features: int


class InlineInference(Generic[T]):
    """Scores each batch when it is submitted, in the caller's thread."""

    def __init__(
        self, scorers: dict[str, Scorer], explain: int = 0, explain_from: float = 0.0
    ) -> None:
        self.scorers = scorers
        self.explain = explain
        self.explain_from = explain_from
        self._done: list[Scored[T]] = []
        if explain:
            for scorer in scorers.values():
                scorer.warm_up(explain)  # not on the first candidate's latency

    def submit(self, top: str, features: Sequence[NDArray[np.float32]], tag: T) -> None:
        scorer = self.scorers[top]
        started = time.perf_counter()
        scores = scorer.score(np.stack(features), self.explain, self.explain_from)
        seconds = time.perf_counter() - started
        memory = _device_memory(scorer.device)
        self._done.append(
            Scored(
                top,
                tag,
                scores.raw,
                scores.percentile,
                scores.nearest_index,
                seconds,
                memory,
                scores.explanation,
            )
        )

    def completed(self, wait_s: float = 0.0) -> list[Scored[T]]:
        """The batches scored since the last call."""
        done, self._done = self._done, []
        return done

    def pending(self) -> int:
        """Batches submitted and not yet returned by :meth:`completed`."""
        return len(self._done)

    def check(self) -> None:
        """Nothing to check: scoring runs in this process."""

    def close(self) -> None:
        """Nothing to release."""


class ProcessInference(Generic[T]):
    """Scores batches in a worker process (see the module docstring)."""

    def __init__(
        self,
        models: Sequence[ModelFile],
        device: str,
        cpu_threads: int,
        max_rows: int,
        explain: int = 0,
        explain_from: float = 0.0,
    ) -> None:
        width = max(m.n_features for m in models)
        self._n_features = {m.top: m.n_features for m in models}
        self._max_rows = max_rows
        layout = _SlotLayout(max_rows, width, explain)
        memory_fd = _shared_memory(layout.size * SLOTS)
        self._memory = mmap.mmap(memory_fd, layout.size * SLOTS)
        self._slots = [layout.views(self._memory, i) for i in range(SLOTS)]
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "service.core.inference",
                    str(theirs.fileno()),
                    str(memory_fd),
                ],
                pass_fds=(theirs.fileno(), memory_fd),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
            os.close(memory_fd)
        self._connection = Connection(ours.detach())
        try:
            self._send((list(models), device, cpu_threads, max_rows, width, explain, explain_from))
            started = self._connection.poll(START_TIMEOUT_S)
        except BaseException:  # interrupted (a signal at start): the worker must not outlive it
            self._process.kill()
            self._process.wait()
            self._connection.close()
            raise
        if not started:
            self.close()
            raise InferenceError(f"the inference worker did not start in {START_TIMEOUT_S:.0f} s")
        answer = self._receive()
        if answer[0] != "ready":
            self.close()
            raise InferenceError(f"the inference worker could not start: {answer[1]}")
        self.pid = self._process.pid
        self._free = list(range(SLOTS))
        self._busy: dict[int, tuple[str, T, int]] = {}
        self._done: list[Scored[T]] = []

    def submit(self, top: str, features: Sequence[NDArray[np.float32]], tag: T) -> None:
        """Hand a batch (at most ``max_rows``) to the worker; waits while every slot is taken."""
        if len(features) > self._max_rows:
            raise ValueError(f"a batch of {len(features)} rows; the slots hold {self._max_rows}")
        while not self._free:
            self._collect(ANSWER_TIMEOUT_S, at_least_one=True)
        slot = self._free.pop()
        n = len(features)
        np.stack(features, out=self._slots[slot][0][:n, : self._n_features[top]])
        self._send((slot, top, n))
        self._busy[slot] = (top, tag, n)

    def completed(self, wait_s: float = 0.0) -> list[Scored[T]]:
        """The batches scored since the last call; waits up to ``wait_s`` for the first one
        if none is done yet and some are in the worker's hands."""
        self._collect(0.0 if self._done else wait_s, at_least_one=False)
        done, self._done = self._done, []
        return done

    def pending(self) -> int:
        """Batches submitted and not yet returned by :meth:`completed`."""
        return len(self._busy) + len(self._done)

    def check(self) -> None:
        """Raise :class:`InferenceError` if the worker has exited (killed, out of memory) - seen
        at once, not only when the next batch is sent to it."""
        code = self._process.poll()
        if code is not None:
            raise InferenceError(f"the inference worker is gone (exit code {code})")

    def close(self) -> None:
        """Stop the worker (it finishes the batch it is scoring)."""
        with contextlib.suppress(OSError):  # already gone
            self._connection.send(None)
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(5)
        self._connection.close()

    def _collect(self, wait_s: float, at_least_one: bool) -> None:
        timeout = wait_s
        while self._busy and self._connection.poll(timeout):
            answer = self._receive()
            if answer[0] != "done":
                raise InferenceError(f"the inference worker failed: {answer[1]}")
            _, slot, seconds, memory, explained = answer
            top, tag, n = self._busy.pop(slot)
            _, raw, percentile, nearest, index, contribution = self._slots[slot]
            explanation = None
            if explained:  # k columns, or fewer when the model has fewer features
                k = min(index.shape[1], self._n_features[top])
                explanation = Explanation(
                    index[:n, :k].astype(np.int64), contribution[:n, :k].copy()
                )
            self._done.append(
                Scored(
                    top,
                    tag,
                    raw[:n].copy(),
                    percentile[:n].copy(),
                    nearest[:n].copy(),
                    seconds,
                    memory,
                    explanation,
                )
            )
            self._free.append(slot)
            timeout = 0.0
        if at_least_one and not self._free:
            raise InferenceError(f"the inference worker did not answer in {wait_s:.0f} s")

    def _send(self, message: Any) -> None:
        try:
            self._connection.send(message)
        except OSError as exc:
            raise InferenceError(f"the inference worker is gone ({self._exit()})") from exc

    def _receive(self) -> Any:
        try:
            return self._connection.recv()
        except (EOFError, OSError) as exc:
            raise InferenceError(f"the inference worker is gone ({self._exit()})") from exc

    def _exit(self) -> str:
        try:
            code = self._process.wait(1)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"exit code {code}"


Slot = tuple[
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.float32],
    NDArray[np.int64],
    NDArray[np.int32],
    NDArray[np.float32],
]


@dataclass(frozen=True)
class _SlotLayout:
    """Where one slot's arrays lie in the shared memory: features (max_rows, width) float32,
    raw scores and percentiles float32, nearest-centre indices int64, then the explanations'
    feature indices (max_rows, explain) int32 and contributions float32 (none when 0)."""

    max_rows: int
    width: int
    explain: int = 0

    @property
    def size(self) -> int:
        return self.max_rows * (4 * self.width + 4 + 4 + 8 + 8 * self.explain)

    def views(self, memory: mmap.mmap, slot: int) -> Slot:
        rows, at, k = self.max_rows, slot * self.size, self.explain
        features = np.frombuffer(memory, np.float32, rows * self.width, at)
        at += 4 * rows * self.width
        raw = np.frombuffer(memory, np.float32, rows, at)
        percentile = np.frombuffer(memory, np.float32, rows, at + 4 * rows)
        nearest = np.frombuffer(memory, np.int64, rows, at + 8 * rows)
        at += 16 * rows
        index = np.frombuffer(memory, np.int32, rows * k, at).reshape(rows, k)
        contribution = np.frombuffer(memory, np.float32, rows * k, at + 4 * rows * k)
        return (
            features.reshape(rows, self.width),
            raw,
            percentile,
            nearest,
            index,
            contribution.reshape(rows, k),
        )


def _shared_memory(size: int) -> int:
    """A file descriptor of ``size`` bytes of memory to share with the worker (an anonymous
    memory file where the system has them, else an unlinked temporary file)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("alert-anomaly-inference")
    else:
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, size)
    return fd


def _device_memory(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def _serve(connection: Connection, memory: mmap.mmap) -> None:
    """The worker's loop: load the models, then score the slots it is sent until the pipe
    closes (or ``None`` arrives)."""
    models, device, cpu_threads, max_rows, width, explain, explain_from = connection.recv()
    try:
        torch.set_num_threads(cpu_threads)
        scorers = {}
        for model in models:
            bundle = load_bundle(model.path)
            if bundle.checksum != model.checksum:
                raise InferenceError(f"{model.path} changed after the service loaded it")
            scorers[model.top] = Scorer(bundle, resolve_device(device))
            if explain:
                scorers[model.top].warm_up(explain)  # not on the first candidate's latency
    except Exception as exc:  # reported to the service, which stops with it
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    layout = _SlotLayout(max_rows, width, explain)
    slots = [layout.views(memory, i) for i in range(SLOTS)]
    gc.freeze()  # the models live as long as the worker
    connection.send(("ready", os.getpid()))
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return  # the service is gone
        if request is None:
            return
        slot, top, n = request
        features, raw, percentile, nearest, index, contribution = slots[slot]
        scorer = scorers[top]
        started = time.perf_counter()
        try:
            matrix = features[:n, : len(scorer.feature_names)]
            scores = scorer.score(matrix, explain, explain_from)
        except Exception as exc:
            connection.send(("error", f"{type(exc).__name__}: {exc}"))
            return
        seconds = time.perf_counter() - started
        raw[:n], percentile[:n], nearest[:n] = scores.raw, scores.percentile, scores.nearest_index
        explained = scores.explanation
        if explained is not None:
            k = explained.index.shape[1]
            index[:n, :k], contribution[:n, :k] = explained.index, explained.contribution
        done = ("done", slot, seconds, _device_memory(scorer.device), explained is not None)
        connection.send(done)


def main(argv: Sequence[str]) -> None:
    """The worker process: ``python -m service.core.inference <socket fd> <memory fd>``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service drains first, then closes the pipe
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks to stderr, as the service
    connection_fd, memory_fd = (int(a) for a in argv)
    memory = mmap.mmap(memory_fd, 0)
    os.close(memory_fd)
    try:
        _serve(Connection(connection_fd), memory)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the service is gone (it stopped while this worker started): no one to tell


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPU cores this process may use: those it may run on, at most its cgroup's CPU quota
    (a container limited to 1.5 CPUs gets 1)."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    try:
        quota, period = cgroup.read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, int(quota) // int(period)))


def choose_mode(mode: InferenceMode) -> Literal["process", "inline"]:
    """``auto``: a worker process when there is a second core for it, else inline."""
    if mode == "auto":
        return "process" if usable_cores() >= 2 else "inline"
    return mode


if __name__ == "__main__":
    main(sys.argv[1:])
