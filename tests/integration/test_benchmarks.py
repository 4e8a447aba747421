"""`python -m benchmarks` runs end to end on a small load and writes every number it prints (the
numbers themselves are the benchmark's business, not the test's), the Rubin rows with the ZTF
rows or alone (``--rows rubin``), and the replay benchmark runs every source. A few minutes - a
consumer-group join per phase, simulated Rubin packets - so it is `slow`: `make slow`, which CI
runs after `make test`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.report import (
    ALERCE,
    BASELINE,
    RUBIN_LIGHTCURVES,
    RUBIN_PASSTHROUGH,
    RUBIN_SERVICE,
)
from models.scorers import DEFAULT_SCORERS, PAPER_BEST_SCORERS
from tests.conftest import REPO
from tests.integration.conftest import children, still_running

pytestmark = pytest.mark.slow

RUBIN_ROWS = (RUBIN_PASSTHROUGH, RUBIN_SERVICE, RUBIN_LIGHTCURVES)


def run_benchmark(kafka_bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=REPO,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=600,
    )


def check_rubin_rows(report: dict[str, Any], packets: int, runs: int, stages: bool) -> None:
    """The Rubin rows of a report: every row's rate, ratio, target and detail."""
    assert report["config"]["rubin_packets"] == packets
    assert all(report["throughput"][row] > 0 for row in RUBIN_ROWS)
    assert all(report["first_to_last"][row] > 0 for row in RUBIN_ROWS)
    assert all(len(report["runs"][row]) == runs for row in RUBIN_ROWS)
    for row in RUBIN_ROWS:  # the median run's (of two: the slower)
        assert report["throughput"][row] == sorted(report["runs"][row])[(runs - 1) // 2]
    assert "client" in report["cpu_us_per_alert"][RUBIN_PASSTHROUGH]
    assert "service process" in report["cpu_us_per_alert"][RUBIN_LIGHTCURVES]
    for row in (RUBIN_SERVICE, RUBIN_LIGHTCURVES):
        ratio = report["ratios"][f"{row}/{RUBIN_PASSTHROUGH}"]
        assert ratio == report["throughput"][row] / report["throughput"][RUBIN_PASSTHROUGH]
    targets = {t["name"]: t for t in report["targets"]}
    assert targets["rubin service packets/s"]["bound"] == 10_000
    assert targets["rubin service / rubin passthrough"]["bound"] == 0.5
    rubin = report["rubin"]
    assert rubin["packets"] == packets
    assert rubin["bytes_per_packet"] > 50_000  # realistic packets: history and cutouts
    for row in (RUBIN_SERVICE, RUBIN_LIGHTCURVES):  # compiled walks, no per-packet fastavro
        assert rubin["decode_paths"][row] == {"batch": packets, "generic": 0}
    # the shipped model reads diaObject fields only, the other light-curve features too
    assert rubin["features"][RUBIN_SERVICE]["lightcurve"] == 0
    light = rubin["features"][RUBIN_LIGHTCURVES]
    assert 0 < light["lightcurve"] < light["features"]
    account = rubin["account"]["stages_us_per_alert"]
    assert account["decode + route + assemble"] > 0
    if stages:
        assert set(rubin["stages_us_per_packet"]) == {RUBIN_SERVICE, RUBIN_LIGHTCURVES}
        for stage_us in rubin["stages_us_per_packet"].values():
            assert stage_us["decode + route + assemble, batches (service)"] > 0
            assert "produce (until acknowledged)" in stage_us
    else:
        assert rubin["stages_us_per_packet"] == {}


def test_the_end_to_end_benchmark_runs_and_writes_its_json(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "e2e.json"
    run = run_benchmark(
        kafka_bootstrap,
        "--n",
        "600",
        "--naive-n",
        "30",
        "--repeat",
        "2",
        "--loads",
        "300",
        "--load-seconds",
        "1",
        "--instances",
        "2",
        "--bursts",
        "200",
        "--burst-surveys",
        "lsst",
        "--rubin-n",
        "300",
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["config"]["alerts"] == 600
    assert report["config"]["features_per_alert"] > 140  # ALeRCE-sized records
    assert report["config"]["scorers"] == dict(DEFAULT_SCORERS)  # what the service rows ran
    assert report["config"]["baseline_scorers"] == dict(PAPER_BEST_SCORERS)  # the baseline's
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, text=True,
                          capture_output=True).stdout.strip()  # fmt: skip
    assert report["versions"]["commit"] in (None, head, f"{head}+changes")  # None: no git
    assert set(report["throughput"]) == {
        "passthrough",
        "naive",
        "peer",
        "service",
        BASELINE,
        ALERCE,
        "service x2 instances",
        *RUBIN_ROWS,
    }
    assert all(rate > 0 for rate in report["throughput"].values())  # steady state
    # passthrough, peer, service and the instances twice each; the slower one counts
    runs = report["runs"]
    assert {name: len(rates) for name, rates in runs.items()} == {
        "passthrough": 2,
        "naive": 1,
        "peer": 2,
        "service": 2,
        BASELINE: 2,
        ALERCE: 2,
        "service x2 instances": 2,
        **dict.fromkeys(RUBIN_ROWS, 2),
    }
    for name in ("passthrough", "peer", "service", BASELINE, ALERCE, "service x2 instances"):
        assert report["throughput"][name] == min(runs[name])
    assert set(report["first_to_last"]) == set(report["throughput"])
    assert all(rate > 0 for rate in report["first_to_last"].values())
    assert report["config"]["steady_state"] == [0.1, 0.9]
    cpu = report["cpu_us_per_alert"]
    # an external broker's process is not ours to measure; the worker exists with 2+ cores
    assert "service process" in cpu["service"]
    assert all(us >= 0 for us in cpu["service"].values())  # a short run may read 0 ticks
    assert "client" in cpu["passthrough"]
    assert set(report["ratios"]) == {
        "service/passthrough",
        "service/naive",
        "service/peer",
        "alerce/service",
        "service/baseline",
        "instances/service",
        f"{RUBIN_SERVICE}/{RUBIN_PASSTHROUGH}",
        f"{RUBIN_LIGHTCURVES}/{RUBIN_PASSTHROUGH}",
    }
    shipped, off = report["latency"]  # batch.flush_when_idle as shipped (on), then off
    assert (shipped["flush_when_idle"], off["flush_when_idle"]) == (True, False)
    for latency in (shipped, off):
        assert latency["alerts"] == 300
        assert 0 < latency["p50_ms"] <= latency["p95_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert "service process" in latency["cpu_us_per_alert"]
        assert sum(latency["batches"].values()) > 0
    assert "idle" not in off["batches"]
    [burst] = report["bursts"]  # Rubin alert packets with their history
    assert (burst["survey"], burst["alerts"]) == ("lsst", 200)
    assert burst["seconds"] > 0
    assert burst["bytes_per_alert"] > 4 * 1024
    paths = report["decode_paths"]
    assert paths["batch"] + paths["generic"] == 600
    assert paths["batch"] >= 300  # the batch decoder did most of the work
    assert {
        "decode (fastavro) + route + assemble, one at a time",
        "decode + route + assemble, batches (service)",
        "encode (a batch at once)",
    } <= set(report["stages_us_per_alert"])
    assert [t["name"] for t in report["targets"]][:7] == [
        "service alerts/s",
        "service alerts/s beside the previous default (the rule for a default)",
        "service / passthrough",
        "service / naive",
        "service / peer",
        "alerce / service",
        "instances / service",
    ]
    assert [t["name"] for t in report["targets"]][-2:] == [
        "rubin service packets/s",
        "rubin service / rubin passthrough",
    ]
    assert "service / naive" in run.stdout
    check_rubin_rows(report, 300, 2, stages=True)
    assert "rubin service, light-curve features" in run.stdout


def test_the_rubin_rows_run_alone(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``--rows rubin``: the Rubin rows only, no ZTF alerts pre-loaded."""
    out = tmp_path / "rubin.json"
    run = run_benchmark(
        kafka_bootstrap, "--rows", "rubin", "--rubin-n", "200", "--repeat", "1", "--json", str(out)
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["throughput"]) == set(RUBIN_ROWS)
    assert set(report["ratios"]) == {f"{row}/{RUBIN_PASSTHROUGH}" for row in RUBIN_ROWS[1:]}
    assert [t["name"] for t in report["targets"]] == [
        "rubin service packets/s",
        "rubin service / rubin passthrough",
    ]
    assert report["latency"] == report["bursts"] == []
    assert report["stages_us_per_alert"] == {}
    assert report["packet_sizes"]["simulated_bytes"]["n"] > 0  # stated beside the rows
    assert "pre-loading 0 alerts" in run.stdout
    check_rubin_rows(report, 200, 1, stages=False)


def test_the_replay_benchmark_runs_every_source() -> None:
    """`python benchmarks/bench_replay.py`: a topic, one-alert files and a table, each replayed
    to Parquet with an inference of its own (a replay closes the one it was given)."""
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_replay.py"), "--n", "2000"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stdout.splitlines() if "messages/s" in line]
    assert [line.split(":")[0] for line in lines] == [
        "topic, 2 partitions",
        "one-alert Avro files",
        "Parquet table rows",
    ]
    assert lines[0].split()[3] == "2000"  # every message of the topic replayed


def test_the_expert_benchmark_counts_each_rankings_finds(tmp_path: Path) -> None:
    """`python benchmarks/bench_expert.py` on one seed and three short nights: every ranking's
    cumulative finds per K, at most one per review and never fewer at a larger K."""
    out = tmp_path / "expert.json"
    small = ["--seeds", "1", "--nights", "3", "--per-night", "10", "--json", str(out)]
    small += ["--plot", str(tmp_path / "yield.svg")]
    run = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_expert.py"), *small],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "loop / static in the first 25 reviews" in run.stdout, run.stdout
    result = json.loads(out.read_text())
    assert result["ks"] == [10, 25]
    assert set(result["found"]) == {"static", "loop", "loop-forest", "aad"}
    for found in result["found"].values():
        (first, second) = found[0]
        assert 0 <= first <= second
        assert first <= 10
        assert second - first <= 15
    # the loop's first night is the static list
    assert result["found"]["loop"][0][0] == result["found"]["static"][0][0]
    assert {len(c[0]) for c in result["curves"].values()} == {30}  # every review
    assert (tmp_path / "yield.svg").read_text().count("<path") > len(result["curves"])


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_sigterm_stops_the_benchmark_and_its_broker() -> None:
    """SIGTERM stops `python -m benchmarks` as Ctrl-C does: its embedded broker (a process of
    its own session, which a plain SIGTERM death used to leave running) goes with it."""
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    bench = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--rows", "passthrough", "--n", "200000"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert bench.stdout is not None
        line = bench.stdout.readline()  # printed once the broker runs
        assert line.startswith("pre-loading"), line
        started = children(bench.pid)
        assert started, "no broker process"
        bench.terminate()
        bench.wait(60)
        left = still_running(started, 30)  # the broker's own shutdown, not a race
        assert not left, f"still running after the benchmark: {left}"
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
