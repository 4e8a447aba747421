"""The ``alerce`` settings profile: ALeRCE's anomaly-step environment (their variable names,
tests/unit/upstream/alerce_settings.json) loaded as our settings, below our own variables and the
command line, above the config file; what we cannot honour is one line.

The drift check against the upstream files themselves needs a clone of alercebroker/pipeline
(``ALERCE_PIPELINE_GIT``: its git directory); CI has none, so there it checks our code against
the committed facts only."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from service.config import SECRET_MASK, Settings, load_settings, settings_in_effect
from service.config.alerce import ALERCE_VARIABLES, DAILY_TOPIC_STRATEGY, REQUIRED, alerce_settings
from service.exceptions import SettingsError
from service.io.kafka import consumer_config, producer_config
from service.ops import redaction
from tests.alerce_upstream import environment, facts, needs_clone, upstream

FACTS = facts("settings")
VARIABLES: dict[str, dict[str, Any]] = {
    name: fact for table in FACTS["files"].values() for name, fact in table.items()
}
BROKERS = "b-1.kafka.example:9096,b-2.kafka.example:9096"
PASSWORD = "pw-never-shown-4b1e"

# an ALeRCE deployment's environment (lc_classification_step/README.md's table, for the
# anomaly step), SASL everywhere as on their brokers
ALERCE = environment(BROKERS, PASSWORD) | {
    "CONSUMER_TOPICS": "lc_classifier_ztf_20261205, lc_classifier_ztf_20261206",
    "CONSUME_TIMEOUT": "0",
    "METRICS_SOURCE": "AnomalyStep",
    "METRICS_SURVEY": "ztf",
    "MODEL_PATH": "/models/anomaly",
    "MODEL_VERSION": "1.0.0",
}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A process environment with none of ours or theirs: set what a test needs with
    ``set_environ``."""
    for name in list(os.environ):
        if name.upper().startswith("ALERT_ANOMALY_") or name in VARIABLES:
            monkeypatch.delenv(name)
    return {}


def set_environ(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def load(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], profile: bool = True, **kw: Any
) -> Settings:
    set_environ(monkeypatch, {**values, **({"ALERT_ANOMALY_PROFILE": "alerce"} if profile else {})})
    return load_settings(**kw)


def test_the_variables_are_the_facts() -> None:
    assert set(ALERCE_VARIABLES) == set(VARIABLES)
    assert set(REQUIRED) == {name for name, fact in VARIABLES.items() if fact["required"]}
    assert VARIABLES["PRODUCER_TOPIC_STRATEGY_CLASS"]["default"] == DAILY_TOPIC_STRATEGY


def test_their_environment_is_our_settings(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with capture_logs() as logs:
        settings = load(monkeypatch, ALERCE)
    assert settings.profile == "alerce"
    kafka = settings.kafka
    assert kafka.bootstrap_servers == BROKERS
    assert (kafka.security_protocol, kafka.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert kafka.sasl_username == "alerce"
    assert kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() == PASSWORD
    assert kafka.consumer == {}
    assert kafka.producer == {}
    assert settings.input.topics == ["lc_classifier_ztf_20261205", "lc_classifier_ztf_20261206"]
    assert settings.input.group_id == "lc-anomaly-step"
    output = settings.output
    assert output.topic_strategy == "daily"
    assert output.format == "alerce"  # their step's record
    assert (output.topic_format, output.dead_letter_topic_format) == (
        "lc_anomaly_%s",
        "lc_anomaly_%s_dlq",
    )
    assert (output.date_format, output.change_hour, output.retention_days) == ("%Y%m%d", 23, 1)
    assert (output.scribe_topic, output.metrics_topic) == ("w_object", "metrics")
    assert (output.metrics_source, output.metrics_survey) == ("AnomalyStep", "ztf")
    # one log line: the profile and their variables we do not use
    [event] = [e for e in logs if e["event"] == "settings_profile"]
    assert event["profile"] == "alerce"
    assert event["unused"] == [
        "MODEL_CLASS",
        "CONSUME_TIMEOUT",
        "CONSUME_MESSAGES",
        "MODEL_VERSION",
        "MODEL_PATH",
    ]
    for used in set(ALERCE) - set(event["unused"]):
        assert not VARIABLES[used]["ours"].startswith("unused"), used


def sasl(*clients: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        f"{client}_KAFKA_{part}": value
        for client in clients
        for part, value in (("USERNAME", "alerce"), ("PASSWORD", password))
    }


def test_the_producer_s_security_defaults_are_theirs() -> None:
    """Producer credentials without protocol and mechanism: SASL_PLAINTEXT with SCRAM-SHA-256
    (their defaults), which are not the scribe's and metrics' SASL_SSL with SCRAM-SHA-512; a
    user name without its password is no SASL (their file ignores it)."""
    required = {name: ALERCE[name] for name in REQUIRED}
    defaults = [
        VARIABLES[f"PRODUCER_{name}"]["default"] for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM")
    ]
    assert defaults == ["SASL_PLAINTEXT", "SCRAM-SHA-256"]
    with pytest.raises(
        SettingsError,
        match=r"\(protocol SASL_SSL vs SASL_PLAINTEXT, mechanism SCRAM-SHA-512 vs SCRAM-SHA-256\)",
    ):
        alerce_settings(required | sasl("PRODUCER", "SCRIBE", "METRICS"))
    with pytest.raises(
        SettingsError,
        match=r"\(protocol PLAINTEXT vs SASL_PLAINTEXT, mechanism - vs SCRAM-SHA-256, user name, "
        r"password\)",
    ):
        alerce_settings(required | sasl("PRODUCER") | {"SCRIBE_KAFKA_USERNAME": "alerce"})
    # the consumer plaintext, the producer (and scribe, metrics) SASL: each client its own
    theirs = {"PRODUCER_SECURITY_PROTOCOL": "sasl_ssl", "PRODUCER_SASL_MECHANISM": "SCRAM-SHA-512"}
    overrides, unused = alerce_settings(
        required | sasl("PRODUCER", "SCRIBE", "METRICS") | theirs | {"CONSUMER_KAFKA_USERNAME": "x"}
    )
    assert unused == ["CONSUMER_KAFKA_USERNAME"]
    assert overrides["kafka"]["consumer"] == {"security.protocol": "PLAINTEXT"}
    assert overrides["kafka"]["producer"] == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alerce",
        "sasl.password": PASSWORD,
    }


def test_each_client_gets_its_own_servers_and_security(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consumer and producer on other brokers with other security: the per-client properties
    win in the clients' configurations; the password is masked in logs and in the settings."""
    others = "kafka-out:9092"
    env = {name: ALERCE[name] for name in REQUIRED} | sasl("CONSUMER")
    env |= {"PRODUCER_SERVER": others, "SCRIBE_SERVER": others, "METRICS_HOST": others}
    settings = load(monkeypatch, env)
    assert settings.kafka.security_protocol == "PLAINTEXT"
    consumer = consumer_config(settings.kafka, "g", "earliest")
    producer = producer_config(settings.kafka)
    assert consumer["bootstrap.servers"] == BROKERS
    assert (consumer["security.protocol"], consumer["sasl.mechanism"]) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    assert (consumer["sasl.username"], consumer["sasl.password"]) == ("alerce", PASSWORD)
    assert producer["bootstrap.servers"] == others
    assert producer["security.protocol"] == "PLAINTEXT"
    # secrets: registered for every log line, masked where the settings are shown
    assert PASSWORD in settings.kafka.secret_values()
    assert redaction.redact(f"auth failed for {PASSWORD}") == f"auth failed for {SECRET_MASK}"
    shown = json.dumps([row.value for row in settings_in_effect(settings)])
    assert PASSWORD not in shown
    assert SECRET_MASK in shown


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"CONSUMER_SERVER": None, "SCRIBE_TOPIC": "", "METRICS_TOPIC": None},
            "profile alerce: missing environment variables CONSUMER_SERVER, SCRIBE_TOPIC, "
            "METRICS_TOPIC (their step does not start without them)",
        ),
        (
            {"PRODUCER_TOPIC_STRATEGY_CLASS": "my.strategies.HourlyTopicStrategy"},
            "PRODUCER_TOPIC_STRATEGY_CLASS my.strategies.HourlyTopicStrategy: the alerce "
            f"profile implements {DAILY_TOPIC_STRATEGY} only (output.topic_strategy daily)",
        ),
        (
            {"SCRIBE_SERVER": "scribe-kafka:9092"},
            "SCRIBE_SERVER names other brokers than PRODUCER_SERVER: this service writes scribe "
            "commands through its one producer (give both the same brokers)",
        ),
        (
            {"METRICS_HOST": "metrics-kafka:9092"},
            "METRICS_HOST names other brokers than PRODUCER_SERVER",
        ),
        (
            {"SCRIBE_KAFKA_PASSWORD": "another-" + PASSWORD},
            "SCRIBE_KAFKA_USERNAME/PASSWORD give another security than the producer's "
            "(password): this service writes scribe commands through its one producer",
        ),
        (
            {"PRODUCER_SECURITY_PROTOCOL": None, "PRODUCER_SASL_MECHANISM": None},
            "SCRIBE_KAFKA_USERNAME/PASSWORD give another security than the producer's (protocol "
            "SASL_SSL vs SASL_PLAINTEXT, mechanism SCRAM-SHA-512 vs SCRAM-SHA-256)",
        ),
        (
            {"PRODUCER_CHANGE_HOUR": "22h"},
            "PRODUCER_CHANGE_HOUR: expected an integer, got '22h'",
        ),
        ({"CONSUMER_TOPICS": " , "}, "CONSUMER_TOPICS: expected a comma-separated list"),
        ({"CONFIG_FROM_YAML": "1"}, "CONFIG_FROM_YAML is set: their step then reads"),
    ],
)
def test_what_we_cannot_honour_is_one_line(
    environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, str | None],
    message: str,
) -> None:
    env = {k: v for k, v in {**ALERCE, **change}.items() if v is not None}
    with pytest.raises(SettingsError) as caught:
        load(monkeypatch, env)
    text = str(caught.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert PASSWORD not in text


def test_an_invalid_value_of_theirs_is_our_one_line(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SettingsError, match=r"^invalid setting output: .*needs exactly one %s"):
        load(monkeypatch, {**ALERCE, "PRODUCER_TOPIC_FORMAT": "lc_anomaly"})


def test_ours_and_the_command_line_win_the_config_file_loses(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        '[input]\ngroup_id = "from-the-file"\n[batch]\nmax_rows = 512\n'
        '[kafka.producer]\n"linger.ms" = "5"\n'
    )
    ours = {
        "ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS": "ours:9092",
        "ALERT_ANOMALY_OUTPUT__CHANGE_HOUR": "20",
    }
    settings = load(
        monkeypatch,
        {**ALERCE, **ours, "PRODUCER_SERVER": "theirs-out:9092", "SCRIBE_SERVER": "theirs-out:9092",
         "METRICS_HOST": "theirs-out:9092"},
        config_file=config,
        overrides={"input": {"topics": ["from-the-command-line"]}},
    )  # fmt: skip
    assert settings.kafka.bootstrap_servers == "ours:9092"
    assert settings.output.change_hour == 20
    assert settings.input.topics == ["from-the-command-line"]
    assert settings.input.group_id == "lc-anomaly-step"  # theirs over the file
    assert settings.batch.max_rows == 512  # the file's, where the profile says nothing
    # maps merge: the profile's producer servers and the file's property
    assert settings.kafka.producer == {"bootstrap.servers": "theirs-out:9092", "linger.ms": "5"}
    # alert-anomaly settings names where each came from
    sources = {row.setting: row.source for row in settings_in_effect(settings, config)}
    assert sources["input.group_id"] == sources["output.scribe_topic"] == "profile alerce"
    assert sources["kafka.bootstrap_servers"] == "ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS"
    assert sources["kafka.producer"] == f"profile alerce, config file {config}"
    assert sources["batch.max_rows"] == f"config file {config}"


def test_without_the_profile_their_variables_are_not_read(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with capture_logs() as logs:
        settings = load(monkeypatch, ALERCE, profile=False)
    assert settings.profile == "default"
    assert settings.kafka.bootstrap_servers == "localhost:9092"
    assert settings.output.topic_strategy == "fixed"
    assert not [e for e in logs if e["event"] == "settings_profile"]


def test_a_config_file_does_not_choose_the_profile(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("profile: alerce\n")
    with pytest.raises(
        SettingsError, match=r"^profile alerce in config file .*ALERT_ANOMALY_PROFILE"
    ):
        load(monkeypatch, ALERCE, profile=False, config_file=config)


def test_an_unknown_profile_is_one_line(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_environ(monkeypatch, {"ALERT_ANOMALY_PROFILE": "alerc"})
    with pytest.raises(SettingsError, match=r"^invalid setting profile: Input should be"):
        load_settings()


def environment_reads(source: str) -> dict[str, tuple[bool, Any]]:
    """Every variable a Python file reads: os.environ[NAME] (required) and os.getenv(NAME[,
    default]) / os.environ.get (optional, with the default when it is a literal)."""
    reads: dict[str, tuple[bool, Any]] = {}

    def is_os(node: ast.AST, attr: str) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == attr
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Subscript) and is_os(node.value, "environ"):
            assert isinstance(node.slice, ast.Constant), ast.unparse(node)
            reads[str(node.slice.value)] = (True, None)
        elif isinstance(node, ast.Call) and (
            is_os(node.func, "getenv")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and is_os(node.func.value, "environ"))
        ):  # fmt: skip
            name = node.args[0]
            assert isinstance(name, ast.Constant), ast.unparse(node)
            default: Any = None
            if len(node.args) > 1:
                try:
                    default = ast.literal_eval(node.args[1])
                except ValueError:
                    default = {"computed": ast.unparse(node.args[1])}
            reads.setdefault(str(name.value), (False, default))
    return reads


@needs_clone
def test_the_facts_are_still_upstream_s() -> None:
    """Every variable each upstream file reads is in the facts, and each fact is read there,
    required as the facts say, with the facts' literal defaults."""
    for path, table in FACTS["files"].items():
        reads = environment_reads(upstream(path))
        assert set(reads) == set(table), path
        for name, (required, default) in reads.items():
            assert table[name]["required"] is required, name
            if not isinstance(default, dict):
                assert table[name]["default"] == default, name
    image = upstream("lc_anomaly_step/Dockerfile")
    assert "COPY lc_classification_step/settings.py /app/settings.py" in image
    assert upstream("lc_classification_step/settings.py") == upstream("lc_anomaly_step/settings.py")
