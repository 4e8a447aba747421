"""Every error made on purpose, in every command, is one line and exit status 2: a misspelled or
malformed variable, an unreachable broker, an unknown topic, bad partition and offset syntax, a
property librdkafka rejects, a port in use, a manifest that is not UTF-8, a page not written yet;
settings and argument errors before torch and the pipeline load. A command that waits for a
broker says so once, then every 15 s, and gives up (sooner when connections are refused);
librdkafka's own lines reach the log at debug level only.

Every command started here gets metrics port 0 (any free one): none binds a fixed port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from models.resources import bundle_dirname, sample_dir
from models.scorers import DEFAULT_SCORERS
from service.config import KafkaSettings
from service.io.embedded import EmbeddedBroker
from service.io.kafka import create_topics
from service.ops.availability import REFUSED_TIMEOUT_S
from tests.integration.conftest import CLI

SAMPLE = str(sample_dir() / "objects.parquet")
REFUSING = "127.0.0.1:1"  # nothing listens there: connections are refused at once
UNRESOLVABLE = "broker.alert-anomaly.invalid:9092"  # never resolves (RFC 2606): no refusal


def command_lines(tmp: Path) -> dict[str, list[str]]:
    """Each command with arguments that are fine on their own."""
    return {
        "run": ["run", "--topic", "x"],
        "settings": ["settings"],
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


def cli(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The command with a clean environment and metrics port 0 (a fixed port would collide with
    anything that holds it, e.g. a service a developer runs)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env={**clean, "ALERT_ANOMALY_METRICS_PORT": "0", **(env or {})},
        timeout=timeout,
    )


def events(stderr: str) -> list[dict[str, Any]]:
    """The JSON log events among the lines of stderr."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def only_own_lines_before_the_error(result: subprocess.CompletedProcess[str]) -> None:
    """Above the error line, only the command's own JSON events: no librdkafka line at the
    default level, no plain text."""
    above = result.stderr.strip().splitlines()[:-1]
    assert all(line.startswith("{") for line in above), result.stderr[-2000:]
    assert not [e for e in events(result.stderr) if e.get("logger") == "librdkafka"]


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
    ("args", "expected"),
    [
        (["run", "--topic", "x", "--check", "--offline"], "kafka.sasl_mechanism"),
        (["replay", "--topic", "x", "--out", "{tmp}/o", "--partitions", "0,x"], "--partitions"),
        (["replay", "--topic", "x", "--out", "{tmp}/o", "--since", "soon"], "'soon'"),
        (["score", SAMPLE, "{tmp}/scores.txt"], "OUTPUT must end in"),
        (["evaluate", "--data", SAMPLE, "--out", "{tmp}/e", "--detectors", "lof"], "'lof'"),
        (
            ["evaluate", "--data", SAMPLE, "--out", "{tmp}/e", "--reference-bug", "log-branch"],
            "ours configuration",
        ),
    ],
    ids=[
        "run settings",
        "replay partitions",
        "replay time",
        "score output",
        "evaluate detector",
        "evaluate bug without paper",
    ],
)
def test_settings_and_argument_errors_come_before_the_models_load(
    args: list[str], expected: str, tmp_path: Path
) -> None:
    """An operator's mistake is reported without importing torch or the pipeline first (the
    imports take seconds): Python's import log (-X importtime) of the failing command names
    neither."""
    env = {"ALERT_ANOMALY_KAFKA__SASL_MECHANISM": "SCRAM-SHA-1"} if args[0] == "run" else {}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    result = subprocess.run(
        [CLI[0], "-X", "importtime", *CLI[1:], *(a.replace("{tmp}", str(tmp_path)) for a in args)],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=120,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in lines[-1], lines[-1]
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    assert "service.commands" in imported  # the log is there
    assert not {"torch", "service.pipeline", "service.live"} & imported


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
    """A broker that never answers (its name does not resolve): the command says once what it
    waits for and gives up after kafka.unavailable_timeout_s, exit status 2."""
    env = {
        "ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS": UNRESOLVABLE,
        "ALERT_ANOMALY_KAFKA__UNAVAILABLE_TIMEOUT_S": "3",
    }
    result = cli([a.replace("{tmp}", str(tmp_path)) for a in args], env)
    one_line_error(result, f"cannot reach a Kafka broker at {UNRESOLVABLE} within")
    only_own_lines_before_the_error(result)
    waiting = [e for e in events(result.stderr) if e["event"] == "waiting_for_brokers"]
    assert len(waiting) == 1, result.stderr
    assert waiting[0]["bootstrap_servers"] == UNRESOLVABLE
    assert waiting[0]["gives_up_after_s"] == 3


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--topic", "x"],
        ["run", "--topic", "x", "--check"],
        ["replay", "--topic", "x", "--out", "{tmp}/out"],
        ["replay", "--files", SAMPLE, "--output-topic", "x"],
        ["publish-sample", "--topic", "x", "--n", "3"],
    ],
    ids=["run", "run --check", "replay", "replay to a topic", "publish-sample"],
)
def test_refused_connections_give_up_soon(args: list[str], tmp_path: Path) -> None:
    """Every bootstrap address refuses: the command gives up after REFUSED_TIMEOUT_S, long
    before kafka.unavailable_timeout_s (its default, 120 s: the subprocess's timeout is below
    it), in one line after one waiting line."""
    env = {"ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS": REFUSING}
    result = cli([a.replace("{tmp}", str(tmp_path)) for a in args], env, timeout=100)
    one_line_error(result, f"cannot reach a Kafka broker at {REFUSING}: connection refused")
    assert f"for {REFUSED_TIMEOUT_S:.0f} s" in result.stderr
    only_own_lines_before_the_error(result)
    assert [e["event"] for e in events(result.stderr)].count("waiting_for_brokers") == 1


def test_a_long_wait_for_brokers_reports_progress() -> None:
    """Nothing answers for longer than PROGRESS_EVERY_S (15 s): a progress line at least every
    15 s, then the error once kafka.unavailable_timeout_s has passed."""
    env = {
        "ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS": UNRESOLVABLE,
        "ALERT_ANOMALY_KAFKA__UNAVAILABLE_TIMEOUT_S": "17",
    }
    result = cli(["publish-sample", "--topic", "x", "--n", "3"], env, timeout=100)
    one_line_error(result, f"cannot reach a Kafka broker at {UNRESOLVABLE} within")
    only_own_lines_before_the_error(result)
    names = [e["event"] for e in events(result.stderr)]
    assert names.count("waiting_for_brokers") == 1, names
    progress = [e for e in events(result.stderr) if e["event"] == "still_waiting_for_brokers"]
    assert progress, names
    assert all(0 < e["gives_up_in_s"] <= 17 for e in progress), progress


def test_an_offline_check_prints_no_library_lines() -> None:
    """`run --check --offline` makes the clients (no broker listens): nothing but its report."""
    env = {"ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS": REFUSING}
    result = cli(["run", "--topic", "x", "--check", "--offline"], env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1].startswith("check passed")
    names = [e["event"] for e in events(result.stderr)]
    assert "librdkafka" not in result.stderr, result.stderr[-2000:]
    assert not {"waiting_for_brokers", "brokers_unavailable", "kafka_error"} & set(names)


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
    for args in (
        ["run", "--topic", "x"],
        ["run", "--topic", "x", "--check", "--offline"],
        ["publish-sample", "--topic", "x"],
    ):
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


def test_broker_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    """`alert-anomaly broker` on a port held by a plain socket, then by another broker."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(["broker", "--port", str(port)], timeout=120)
    one_line_error(result, f"cannot listen on 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "listening" not in result.stdout
    with EmbeddedBroker(log_file=tmp_path / "tansu.log") as other:
        result = cli(["broker", "--port", str(other.port)], timeout=120)
    one_line_error(result, f"cannot listen on 127.0.0.1:{other.port}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "listening" not in result.stdout


def test_a_manifest_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    top, scorer = next(iter(DEFAULT_SCORERS.items()))
    bundle = tmp_path / "bundles" / bundle_dirname("ztf", top, scorer)
    bundle.mkdir(parents=True)
    (bundle / "manifest.json").write_bytes(b'\xff\xfe{"format_version": 1}')
    bundles = str(tmp_path / "bundles")
    for args in (
        ["run", "--topic", "x", "--check", "--offline", "--bundles", bundles],
        ["score", SAMPLE, str(tmp_path / "scores.csv"), "--bundles", bundles],
    ):
        result = cli(args)
        one_line_error(result, "manifest.json: 'utf-8' codec can't decode")
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_compare_with_a_page_not_written_yet_is_one_line(tmp_path: Path) -> None:
    paper = Path(__file__).resolve().parents[2] / "docs" / "results" / "paper"
    page = tmp_path / "results.md"
    result = cli(["compare", "--paper", str(paper), "--page", str(page)])
    one_line_error(result, f"{page} does not exist")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not page.exists()


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
