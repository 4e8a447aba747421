"""`python -m benchmarks` runs end to end on a small load and writes every number it prints (the
numbers themselves are the benchmark's business, not the test's), and the replay benchmark runs
every source. About a minute and a half - a consumer-group join per phase - so it is `slow`:
`make slow`, which CI runs after `make test`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.e2e import ALERCE
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_end_to_end_benchmark_runs_and_writes_its_json(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    out = tmp_path / "e2e.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
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
            "--json",
            str(out),
        ],
        cwd=REPO,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["config"]["alerts"] == 600
    assert report["config"]["features_per_alert"] > 140  # ALeRCE-sized records
    assert set(report["throughput"]) == {
        "passthrough",
        "naive",
        "peer",
        "service",
        ALERCE,
        "service x2 instances",
    }
    assert all(rate > 0 for rate in report["throughput"].values())  # steady state
    # passthrough, peer, service and the instances twice each; the slower one counts
    runs = report["runs"]
    assert {name: len(rates) for name, rates in runs.items()} == {
        "passthrough": 2,
        "naive": 1,
        "peer": 2,
        "service": 2,
        ALERCE: 2,
        "service x2 instances": 2,
    }
    for name in ("passthrough", "peer", "service", ALERCE, "service x2 instances"):
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
        "instances/service",
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
    assert [t["name"] for t in report["targets"]][:6] == [
        "service alerts/s",
        "service / passthrough",
        "service / naive",
        "service / peer",
        "alerce / service",
        "instances / service",
    ]
    assert "service / naive" in run.stdout


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
