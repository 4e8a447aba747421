"""Every error made on purpose, in every command, is one line and exit status 2: a misspelled or
malformed variable, an unreachable broker, an unknown topic, bad partition and offset syntax, a
property librdkafka rejects, a port in use. And librdkafka's debug lines reach the log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from models.resources import sample_dir
from service.config import KafkaSettings
from service.kafka import create_topics
from tests.integration.conftest import CLI

SAMPLE = str(sample_dir() / "objects.parquet")
UNREACHABLE = "127.0.0.1:1"


def command_lines(tmp: Path) -> dict[str, list[str]]:
    """Each command with arguments that are fine on their own."""
    return {
        "run": ["run", "--topic", "x"],
        "replay": ["replay", "--topic", "x", "--out", str(tmp / "replay")],
        "score": ["score", SAMPLE, str(tmp / "scores.csv")],
        "top": ["top", "--data", SAMPLE],
        "train": ["train", "--data", SAMPLE, "--top-class", "Periodic", "--scorer", "ae",
                  "--out", str(tmp / "bundle")],
        "evaluate": ["evaluate", "--data", SAMPLE, "--out", str(tmp / "evaluation")],
        "simulate": ["simulate", "--n", "10", "--out", str(tmp / "objects.parquet")],
        "publish-sample": ["publish-sample", "--topic", "x"],
        "demo": ["demo"],
        "broker": ["broker"],
        "compare": ["compare", "--paper", str(tmp), "--ours", str(tmp)],
    }  # fmt: skip


def cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env={**clean, **(env or {})}, timeout=300
    )


def one_line_error(
    result: subprocess.CompletedProcess[str], expected: str, status: int = 2
) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == status, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert expected in lines[-1], lines[-1]
    assert lines[-1].startswith("alert-anomaly "), lines[-1]


ENVIRONMENT_ERRORS = {
    "unknown variable": (
        {"ALERT_ANOMALY_BATCH__MAX_ROW": "2"},
        "did you mean ALERT_ANOMALY_BATCH__MAX_ROWS?",
    ),
    "bad value": (
        {"ALERT_ANOMALY_INPUT__TOPICS": "lc_classifier"},
        "ALERT_ANOMALY_INPUT__TOPICS: expected a JSON list",
    ),
}


@pytest.mark.parametrize("error", sorted(ENVIRONMENT_ERRORS))
@pytest.mark.parametrize("command", sorted(command_lines(Path("."))))
def test_every_command_reports_a_bad_environment_in_one_line(
    command: str, error: str, tmp_path: Path
) -> None:
    env, expected = ENVIRONMENT_ERRORS[error]
    result = cli(command_lines(tmp_path)[command], env)
    one_line_error(result, expected)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--topic", "x"],
        ["run", "--topic", "x", "--check"],
        ["replay", "--topic", "x", "--out", "{tmp}/out"],
        ["publish-sample", "--topic", "x", "--n", "3"],
    ],
    ids=["run", "run --check", "replay", "publish-sample"],
)
def test_an_unreachable_broker_is_one_line(args: list[str], tmp_path: Path) -> None:
    env = {
        "ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS": UNREACHABLE,
        "ALERT_ANOMALY_KAFKA__UNAVAILABLE_TIMEOUT_S": "3",
    }
    result = cli([a.replace("{tmp}", str(tmp_path)) for a in args], env)
    one_line_error(result, f"cannot reach a Kafka broker at {UNREACHABLE}")
    # librdkafka's own lines are held back when they repeat: a handful, not hundreds
    assert len(result.stderr.splitlines()) < 30, result.stderr


def test_unknown_topics_bad_partitions_and_offsets(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [f"{topic_prefix}-in"])
    base = ["--bootstrap-servers", kafka_bootstrap]
    nosuch = f"{topic_prefix}-nosuch"
    one_line_error(cli(["run", *base, "--topic", nosuch]), f"input topic '{nosuch}' does not exist")
    out = str(tmp_path / "out")
    one_line_error(cli(["replay", *base, "--topic", nosuch, "--out", out]), "does not exist")
    replay = ["replay", *base, "--topic", f"{topic_prefix}-in", "--out", out]
    one_line_error(
        cli([*replay, "--partitions", "0,x"]), "--partitions expects comma-separated partition"
    )
    one_line_error(
        cli([*replay, "--start-offset", "0-5"]), "--start-offset expects PARTITION:OFFSET"
    )
    one_line_error(cli([*replay, "--since", "yesterday"]), "cannot read 'yesterday' as a time")
    # kafka.consumer reaches the replay's consumer too
    bad = {"ALERT_ANOMALY_KAFKA__CONSUMER": json.dumps({"fetch.wait.max.ms": "soon"})}
    one_line_error(cli(replay, bad), "invalid Kafka client property")


def test_a_property_librdkafka_rejects_is_one_line_and_check_finds_it() -> None:
    env = {"ALERT_ANOMALY_KAFKA__EXTRA": json.dumps({"bogus.property": "1"})}
    for args in (["run", "--topic", "x"], ["run", "--topic", "x", "--check", "--offline"]):
        result = cli(args, env)
        one_line_error(result, "invalid Kafka client property")
        assert "bogus.property" in result.stderr


def test_a_metrics_port_in_use_is_one_line(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}-in"
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [topic])
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            ["run", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
             "--metrics-port", str(port)]
        )  # fmt: skip
    one_line_error(result, f"metrics_port {port}: cannot listen")


def test_librdkafka_debug_lines_are_structured_events(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}-in"
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), [topic])
    env = {"ALERT_ANOMALY_KAFKA__EXTRA": json.dumps({"debug": "broker"})}
    args = ["--log-level", "debug", "run", "--bootstrap-servers", kafka_bootstrap]
    result = cli([*args, "--topic", topic, "--check"], env)
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    debug = [e for e in events if e.get("logger") == "librdkafka" and e.get("level") == "debug"]
    assert debug, result.stderr[-2000:]
