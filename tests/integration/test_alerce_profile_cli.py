"""The ``alerce`` profile as deployed: ``alert-anomaly run --check --offline`` with ALeRCE's
anomaly-step environment (their variable names, SASL included) and ``ALERT_ANOMALY_PROFILE``
checks the settings, the models and the Kafka client properties (no broker) and exits 0; a
variable their step requires is missing: one line, exit status 2. The password shows nowhere."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from tests.alerce_upstream import environment
from tests.integration.conftest import CLI

PASSWORD = "pw-of-the-alerce-deployment-7c2"
BROKERS = "127.0.0.1:1"  # offline: nothing is contacted
ALERCE = environment(BROKERS, PASSWORD)


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``run --check --offline`` in a clean environment (none of ours but the profile and
    metrics port 0)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ALERT_ANOMALY_")}
    clean = {k: v for k, v in clean.items() if k not in ALERCE}
    return subprocess.run(
        [*CLI, "run", "--check", "--offline"],
        capture_output=True,
        text=True,
        env={**clean, "ALERT_ANOMALY_METRICS_PORT": "0", "ALERT_ANOMALY_PROFILE": "alerce", **env},
        timeout=300,
    )


def events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_their_environment_passes_the_check() -> None:
    result = check(ALERCE)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Kafka client properties: accepted by librdkafka" in result.stdout
    assert "check passed" in result.stdout
    [profile] = [e for e in events(result.stderr) if e["event"] == "settings_profile"]
    assert profile["profile"] == "alerce"
    assert profile["unused"] == ["MODEL_CLASS", "CONSUME_MESSAGES"]
    assert PASSWORD not in result.stdout + result.stderr


def test_a_missing_variable_is_one_line() -> None:
    env = {k: v for k, v in ALERCE.items() if k not in ("SCRIBE_TOPIC", "CONSUMER_GROUP_ID")}
    result = check(env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "alert-anomaly run: error: profile alerce: missing environment variables "
        "CONSUMER_GROUP_ID, SCRIBE_TOPIC (their step does not start without them)"
    ]
    assert result.stdout == ""
