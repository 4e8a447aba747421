"""Inference in a worker process (service.core.inference): the same bits as scoring in place,
batches in flight returned with their tags, the worker's checks and failures, and a service whose
worker dies mid-stream losing nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models.bundle import load_bundle
from models.resources import bundle_dirname, bundles_dir, sample_dir
from models.scoring import Scorer
from models.table import read_table
from service.core.inference import (
    SLOTS,
    InlineInference,
    ModelFile,
    ProcessInference,
    Scored,
    _shared_memory,
    choose_mode,
    usable_cores,
)
from service.demo import publish, read_topic, sample_messages
from service.exceptions import InferenceError
from tests.integration.test_service import (
    Start,
    restart_covers_everything,
    service_args,
    topics,
)

CLASSES = {"Periodic": "mcdsvdd", "Stochastic": "ae"}


def model_files() -> list[ModelFile]:
    files = []
    for top, scorer in CLASSES.items():
        path = bundles_dir() / bundle_dirname("ztf", top, scorer)
        bundle = load_bundle(path)
        files.append(ModelFile(top, path, bundle.checksum, len(bundle.feature_names)))
    return files


def features(top: str, n: int, offset: int = 0) -> np.ndarray:
    table = read_table(sample_dir() / "objects.parquet")
    names = load_bundle(bundles_dir() / bundle_dirname("ztf", top, CLASSES[top])).feature_names
    return table.columns(names).astype(np.float32)[offset : offset + n]


@pytest.fixture(scope="module")
def worker() -> ProcessInference[int]:
    inference: ProcessInference[int] = ProcessInference(model_files(), "cpu", 1, max_rows=256)
    yield inference
    inference.close()


def drain(inference: ProcessInference[int] | InlineInference[int]) -> list[Scored[int]]:
    done: list[Scored[int]] = []
    deadline = time.monotonic() + 60
    while inference.pending() and time.monotonic() < deadline:
        done += inference.completed(0.5)
    assert not inference.pending()
    return done


def score_one(inference: ProcessInference[int]) -> list[Scored[int]]:
    inference.submit("Periodic", list(features("Periodic", 3)), 1)
    return drain(inference)


def test_the_worker_scores_like_the_scorer_in_place(worker: ProcessInference[int]) -> None:
    """More batches than slots, of both classes and of several sizes, each tagged: every one
    comes back once, with its tag and bitwise the scores of Scorer.score."""
    batches = [
        (top, features(top, n, offset=17 * i))
        for i, (top, n) in enumerate(
            [("Periodic", 256), ("Stochastic", 1), ("Periodic", 7), ("Stochastic", 200)] * 2
        )
    ]
    assert len(batches) > SLOTS
    done: list[Scored[int]] = []
    for tag, (top, x) in enumerate(batches):
        worker.submit(top, list(x), tag)
        done += worker.completed()
    done += drain(worker)
    assert sorted(s.tag for s in done) == list(range(len(batches)))
    scorers = {m.top: Scorer(load_bundle(m.path), "cpu") for m in model_files()}
    for scored in done:
        top, x = batches[scored.tag]
        assert scored.top == top
        expected = scorers[top].score(x)
        assert scored.raw.tobytes() == expected.raw.tobytes()
        assert scored.percentile.tobytes() == expected.percentile.tobytes()
        assert scored.nearest.tolist() == expected.nearest_index.tolist()
        assert scored.seconds > 0
        assert scored.device_memory == 0


def test_inline_inference_gives_the_same_scores(worker: ProcessInference[int]) -> None:
    inline: InlineInference[int] = InlineInference(
        {m.top: Scorer(load_bundle(m.path), "cpu") for m in model_files()}
    )
    x = features("Stochastic", 100)
    inline.submit("Stochastic", list(x), 1)
    worker.submit("Stochastic", list(x), 2)
    [here] = drain(inline)
    [there] = drain(worker)
    assert here.raw.tobytes() == there.raw.tobytes()
    assert (here.tag, there.tag) == (1, 2)


def test_the_worker_ignores_sigint_and_sigterm(worker: ProcessInference[int]) -> None:
    """A terminal's Ctrl-C or a group-wide SIGTERM reaches the worker too: it goes on until the
    service, having drained, closes the pipe."""
    os.kill(worker.pid, signal.SIGINT)
    os.kill(worker.pid, signal.SIGTERM)
    # the worker answers after the signals: they reached it before it ran again
    for tag in (9, 10):
        worker.submit("Periodic", list(features("Periodic", 3)), tag)
        [scored] = drain(worker)
        assert scored.tag == tag


def wait_until_dead(pid: int, timeout_s: float = 30.0) -> None:
    """Until the process is a zombie (or gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still runs")


def test_a_dead_worker_is_an_inference_error() -> None:
    inference: ProcessInference[int] = ProcessInference(model_files(), "cpu", 1, max_rows=64)
    try:
        os.kill(inference.pid, signal.SIGKILL)
        wait_until_dead(inference.pid)
        with pytest.raises(InferenceError, match="gone"):
            score_one(inference)  # the send may still succeed: then the answer never comes
    finally:
        inference.close()


def test_close_ends_the_worker() -> None:
    inference: ProcessInference[int] = ProcessInference(model_files(), "cpu", 1, max_rows=64)
    pid = inference.pid
    inference.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_bundle_changed_after_loading_is_refused() -> None:
    [periodic, _] = model_files()
    changed = ModelFile(periodic.top, periodic.path, "0" * 64, periodic.n_features)
    with pytest.raises(InferenceError, match="changed after the service loaded it"):
        ProcessInference([changed], "cpu", 1, max_rows=64)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_the_worker_scores_on_cuda_like_the_scorer_there() -> None:
    """The GPU twin: the worker owns the CUDA context; its scores are those of Scorer on the
    same device, and it reports the device memory it holds."""
    inference: ProcessInference[int] = ProcessInference(model_files(), "cuda", 1, max_rows=256)
    try:
        x = features("Periodic", 200)
        inference.submit("Periodic", list(x), 0)
        [scored] = drain(inference)
    finally:
        inference.close()
    expected = Scorer(load_bundle(model_files()[0].path), "cuda").score(x)
    assert scored.raw.tobytes() == expected.raw.tobytes()
    assert scored.device_memory > 0


def test_usable_cores_follow_the_cgroup_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "missing") == affinity
    cpu_max.write_text("max 100000\n")
    assert usable_cores(cpu_max) == affinity
    cpu_max.write_text("150000 100000\n")
    assert usable_cores(cpu_max) == min(affinity, 1)
    cpu_max.write_text("50000 100000\n")
    assert usable_cores(cpu_max) == 1
    assert choose_mode("inline") == "inline"
    assert choose_mode("process") == "process"
    assert choose_mode("auto") == ("process" if usable_cores() >= 2 else "inline")


# -- in the service ------------------------------------------------------------------------


def test_the_service_stops_when_its_worker_dies_and_a_restart_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    n = 3000
    names = topics(kafka_bootstrap, topic_prefix, partitions=2)
    placed = publish(kafka_bootstrap, names[0], sample_messages(n))
    args = service_args(kafka_bootstrap, names, topic_prefix, "--batch-rows", "8")
    first = service_process(*args, env={"ALERT_ANOMALY_MODEL__INFERENCE": "process"})
    pid = first.event("service_starting")["inference_pid"]
    first.wait_for_metric("alert_anomaly_commits_total", 1, timeout=120)
    os.kill(pid, signal.SIGKILL)
    assert first.process.wait(60) == 2  # an error, as one line
    assert first.event("inference_failed")["in_flight"] >= 0
    before = read_topic(kafka_bootstrap, names[1], n, timeout_s=5)
    assert 0 < len(before) < n, "the worker must die mid-stream"

    restart_covers_everything(kafka_bootstrap, names, topic_prefix, placed, service_process)


def test_a_worker_that_dies_while_the_input_is_quiet_stops_the_service(
    kafka_bootstrap: str, topic_prefix: str, service_process: Start
) -> None:
    """No batch is in the worker's hands, so no answer is missing: the service still sees its
    worker gone (killed, out of memory) and exits with the error, to be restarted, instead of
    waiting, ready, for the next alert."""
    names = topics(kafka_bootstrap, topic_prefix, partitions=1)
    args = service_args(kafka_bootstrap, names, topic_prefix)
    service = service_process(*args, env={"ALERT_ANOMALY_MODEL__INFERENCE": "process"})
    pid = service.event("service_starting")["inference_pid"]
    service.assigned()
    os.kill(pid, signal.SIGKILL)
    assert service.process.wait(60) == 2, "".join(service.raw[-20:])
    errors = [line for line in service.raw if "the inference worker is gone" in line]
    assert errors, service.raw
    assert not [line for line in service.raw if "Traceback" in line], service.raw


def test_a_worker_whose_service_is_gone_before_it_starts_exits_quietly() -> None:
    """The service stops (SIGTERM) before it sends the worker its models: the worker reads
    the closed pipe and exits 0 without a traceback (tests/integration/test_signals.py races
    for the same moment)."""
    ours, theirs = socket.socketpair()
    memory_fd = _shared_memory(4096)
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "service.core.inference", str(theirs.fileno()), str(memory_fd)],
            pass_fds=(theirs.fileno(), memory_fd),
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        theirs.close()
        os.close(memory_fd)
    ours.close()  # the service is gone before sending anything
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
