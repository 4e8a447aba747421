"""Kubernetes' service-link variables among the settings' variables, `alert-anomaly settings`
(every setting with its source, secrets masked) and the masking of secrets in text."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from service.cli import main
from service.config import (
    ENV_PREFIX,
    SECRET_MASK,
    Settings,
    check_environment,
    is_secret_property,
    is_service_link,
    load_settings,
    settings_in_effect,
)
from service.config.loading import _one_line
from service.exceptions import SettingsError
from service.ops import redaction

# what a pod gets for Services named alert-anomaly (ports metrics 9108 and admin 8080, second
# port unnamed-first style) and alert-anomaly-kafka on an IPv6 cluster
LINKS = {
    "ALERT_ANOMALY_SERVICE_HOST": "10.96.14.7",
    "ALERT_ANOMALY_SERVICE_PORT": "9108",
    "ALERT_ANOMALY_SERVICE_PORT_METRICS": "9108",
    "ALERT_ANOMALY_SERVICE_PORT_ADMIN_HTTP": "8080",
    "ALERT_ANOMALY_PORT": "tcp://10.96.14.7:9108",
    "ALERT_ANOMALY_PORT_9108_TCP": "tcp://10.96.14.7:9108",
    "ALERT_ANOMALY_PORT_9108_TCP_PROTO": "tcp",
    "ALERT_ANOMALY_PORT_9108_TCP_PORT": "9108",
    "ALERT_ANOMALY_PORT_9108_TCP_ADDR": "10.96.14.7",
    "ALERT_ANOMALY_PORT_8080_UDP": "udp://10.96.14.7:8080",
    "ALERT_ANOMALY_KAFKA_SERVICE_HOST": "fd00:10:96::3",
    "ALERT_ANOMALY_KAFKA_PORT": "tcp://[fd00:10:96::3]:9092",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in [k for k in os.environ if k.upper().startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    return monkeypatch


def test_service_links_pass_and_load(clean_env: pytest.MonkeyPatch) -> None:
    check_environment(LINKS)
    for key, value in LINKS.items():
        clean_env.setenv(key, value)
    assert load_settings().metrics_port == 9108


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ALERT_ANOMALY_KAFKA_BOOTSTRAP_SERVERS", "kafka:9092"),  # one underscore: a typo
        ("ALERT_ANOMALY_METRIC_PORT", "9108"),  # {SVC}_PORT holds a URL, not a number
        ("ALERT_ANOMALY_SERVICE_HOST", "kafka.example"),  # a cluster IP, not a name
        ("ALERT_ANOMALY_SERVICE_PORT", "http"),
        ("ALERT_ANOMALY_PORT_9108_TCP_PORT", "9109"),  # the port of its name
        ("ALERT_ANOMALY_PORT_9108_TCP", "udp://10.96.14.7:9108"),  # the protocol of its name
        ("ALERT_ANOMALY_PORT_9108_TCP_PROTO", "udp"),
        ("ALERT_ANOMALY_PORT", "tcp://kafka:9092"),
    ],
)
def test_only_the_kubernetes_shapes_pass(name: str, value: str) -> None:
    assert not is_service_link(name, value)
    with pytest.raises(SettingsError, match=f"unknown environment variable {name}"):
        check_environment({name: value})


def test_the_shapes_of_the_links_pass() -> None:
    assert all(is_service_link(k, v) for k, v in LINKS.items())


@pytest.mark.parametrize(
    "value", ['{"sasl.password": "Hunter2-Secret', '"Hunter2-Secret"', '["Hunter2-Secret"]']
)
def test_a_malformed_map_is_named_without_its_value(value: str) -> None:
    with pytest.raises(SettingsError) as error:
        check_environment({"ALERT_ANOMALY_KAFKA__EXTRA": value})
    assert "ALERT_ANOMALY_KAFKA__EXTRA" in str(error.value)
    assert "JSON object" in str(error.value)
    assert "Hunter2" not in str(error.value)


def test_secret_properties() -> None:
    secret = ["sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret", "ssl.key.pem"]
    secret += ["sasl.pasword", "ssl.keystore.passwd"]  # misspelled: rejected, still masked
    plain = ["bootstrap.servers", "security.protocol", "session.timeout.ms", "debug", "acks"]
    assert all(is_secret_property(name) for name in secret)
    assert not any(is_secret_property(name) for name in plain)


def test_validation_messages_mask_the_failed_secret() -> None:
    class Section(BaseModel):
        sasl_password: str

        @field_validator("sasl_password")
        @classmethod
        def _echo(cls, value: str) -> str:
            raise ValueError(f"{value} is too weak")

    with pytest.raises(ValidationError) as error:
        Section(sasl_password="Hunter2-Secret")
    line = _one_line(error.value)
    assert "Hunter2" not in line
    assert SECRET_MASK in line


def rows(settings: Settings, **kwargs: object) -> dict[str, tuple[object, str]]:
    return {r.setting: (r.value, r.source) for r in settings_in_effect(settings, **kwargs)}  # type: ignore[arg-type]


def test_every_setting_has_its_source(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "s.yaml"
    config.write_text(
        "kafka:\n  bootstrap_servers: k:9093\n  extra: {socket.keepalive.enable: 'true'}\n"
        "model:\n  survey: lsst\nbatch:\n  max_rows: 64\n"
    )
    environ = {
        "ALERT_ANOMALY_KAFKA__SASL_MECHANISM": "PLAIN",
        "ALERT_ANOMALY_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "ALERT_ANOMALY_KAFKA__SASL_USERNAME": "anomaly",
        "ALERT_ANOMALY_KAFKA__SASL_PASSWORD": "Hunter2-Secret",
        "ALERT_ANOMALY_KAFKA__EXTRA": '{"sasl.oauthbearer.client.secret": "Oauth-Secret"}',
        "ALERT_ANOMALY_BATCH": '{"max_rows": 128, "max_delay_ms": 5}',
    }
    for key, value in environ.items():
        clean_env.setenv(key, value)
    overrides = {"batch": {"max_rows": 32}}
    settings = load_settings(config, overrides)
    got = rows(
        settings,
        config_file=config,
        overrides=overrides,
        override_names={("batch", "max_rows"): "--batch-rows"},
        environ=environ,
    )
    assert got["batch.max_rows"] == (32, "--batch-rows")
    assert got["batch.max_delay_ms"] == (5.0, "ALERT_ANOMALY_BATCH")
    assert got["kafka.bootstrap_servers"] == ("k:9093", f"config file {config}")
    assert got["kafka.sasl_password"] == (SECRET_MASK, "ALERT_ANOMALY_KAFKA__SASL_PASSWORD")
    assert got["kafka.extra"] == (
        {"socket.keepalive.enable": "true", "sasl.oauthbearer.client.secret": SECRET_MASK},
        f"ALERT_ANOMALY_KAFKA__EXTRA, config file {config}",
    )
    assert got["input.format"] == ("confluent", "default for model.survey lsst")
    assert got["model.scorers"][1] == "default for model.survey lsst"
    assert got["output.topic"] == ("anomaly-scores", "default")
    assert got["kafka.ssl_key_password"] == (None, "default")
    assert "Hunter2-Secret" not in json.dumps(got)
    assert "Oauth-Secret" not in json.dumps(got)


def test_the_settings_command(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("ALERT_ANOMALY_KAFKA__SSL_KEY_PASSWORD", "Hunter2-Secret")
    clean_env.setenv("ALERT_ANOMALY_SERVICE_HOST", "10.96.14.7")  # in a pod: not a setting
    assert main(["settings", "--metrics-port", "0"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["setting", "value", "source"]
    lines = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    assert lines["metrics_port"][1:] == ["0", "--metrics-port"]
    assert lines["kafka.ssl_key_password"][1:] == [
        json.dumps(SECRET_MASK),
        "ALERT_ANOMALY_KAFKA__SSL_KEY_PASSWORD",
    ]
    assert len(lines) == len(settings_in_effect(load_settings()))
    assert "Hunter2" not in table
    assert main(["settings", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"setting": "metrics_port", "value": 9108, "source": "default"} in listed


def test_the_settings_command_fails_in_one_line(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("ALERT_ANOMALY_KAFKA__EXTRA", '{"sasl.password": "Hunter2-Secret"')
    assert main(["settings"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert "Hunter2" not in captured.err


def test_registered_secrets_are_redacted() -> None:
    redaction.register(["Redact-Me-42", "abc"])  # too short to search for in text: kept
    assert redaction.redact("x Redact-Me-42 abc") == f"x {SECRET_MASK} abc"
    event = redaction.redact_event(
        None, "info", {"a": ["Redact-Me-42"], "b": {"c": "Redact-Me-42!"}, "n": 3}
    )
    assert event == {"a": [SECRET_MASK], "b": {"c": f"{SECRET_MASK}!"}, "n": 3}
