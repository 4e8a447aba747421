"""Settings: precedence of the sources, validation with one-line errors, librdkafka export."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import load_settings
from service.exceptions import SettingsError

TOPICS = {"input": {"topics": ["alerts"]}}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("ALERT_ANOMALY_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = load_settings(None, TOPICS)
    assert s.batch.max_rows == 1024
    assert s.batch.max_delay_ms == 20
    assert s.model.scorers == dict.fromkeys(
        ("Transient", "Stochastic", "Periodic"), "mcdsvdd-ens-lite"
    )
    assert s.output.dead_letter_topic == "anomaly-scores-dlq"


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_precedence_overrides_then_environment_then_file(
    suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"settings{suffix}"
    if suffix == ".toml":
        path.write_text(
            '[input]\ntopics = ["from-file"]\ngroup_id = "file-group"\n'
            "[batch]\nmax_rows = 10\nmax_delay_ms = 5\n"
        )
    else:
        path.write_text(
            "input:\n  topics: [from-file]\n  group_id: file-group\n"
            "batch:\n  max_rows: 10\n  max_delay_ms: 5\n"
        )
    monkeypatch.setenv("ALERT_ANOMALY_BATCH__MAX_ROWS", "20")
    monkeypatch.setenv("ALERT_ANOMALY_INPUT__GROUP_ID", "env-group")
    s = load_settings(path, {"input": {"group_id": "cli-group"}})
    assert s.input.topics == ["from-file"]  # file
    assert s.batch.max_rows == 20  # environment over file
    assert s.batch.max_delay_ms == 5  # file over default
    assert s.input.group_id == "cli-group"  # command line over environment


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({**TOPICS, "batch": {"max_rows": 0}}, "invalid setting batch.max_rows: Input should be"),
        ({**TOPICS, "batch": {"max_row": 5}}, "invalid setting batch.max_row: unknown setting"),
        ({**TOPICS, "colour": "red"}, "invalid setting colour: unknown setting"),
        (
            {"input": {"topics": ["a"], "format": "confluent"}},
            "invalid settings: input.format confluent needs input.confluent_schemas",
        ),
        (
            {**TOPICS, "kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}},
            "invalid setting kafka: sasl_mechanism PLAIN needs sasl_username/password",
        ),
    ],
)
def test_errors_are_one_line(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, overrides)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_unknown_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_ANOMALY_BACTH__MAX_ROWS", "3")
    with pytest.raises(SettingsError, match="unknown environment variable ALERT_ANOMALY_BACTH"):
        load_settings(None, TOPICS)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[input\n")
    with pytest.raises(SettingsError, match="is not valid"):
        load_settings(bad)
    ini = tmp_path / "settings.ini"
    ini.write_text("x")
    with pytest.raises(SettingsError, match=r"use \.toml, \.yaml or \.yml"):
        load_settings(ini)


def test_sasl_ssl_passthrough_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_ANOMALY_KAFKA__SASL_PASSWORD", "hunter2")
    s = load_settings(
        None,
        {
            **TOPICS,
            "kafka": {
                "bootstrap_servers": "b1:9093,b2:9093",
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "broker-user",
                "ssl_ca_location": "/etc/ca.pem",
                "extra": {"socket.keepalive.enable": "true"},
            },
        },
    )
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())
    assert s.kafka.librdkafka() == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "broker-user",
        "sasl.password": "hunter2",
        "ssl.ca.location": "/etc/ca.pem",
        "socket.keepalive.enable": "true",
    }


def test_a_misspelled_variable_gets_the_closest_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_ANOMALY_BATCH__MAX_ROW", "3")
    with pytest.raises(SettingsError, match=r"did you mean ALERT_ANOMALY_BATCH__MAX_ROWS\?"):
        load_settings(None, TOPICS)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ALERT_ANOMALY_INPUT__TOPICS", "lc_classifier", "expected a JSON list"),
        ("ALERT_ANOMALY_INPUT__TOPICS", '{"a": 1}', "expected a JSON list"),
        ("ALERT_ANOMALY_KAFKA__EXTRA", "debug=all", "expected a JSON object"),
        ("ALERT_ANOMALY_MODEL", "ae", "expected a JSON object"),
    ],
)
def test_a_list_or_map_variable_must_be_json(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings(None, TOPICS)
    assert str(info.value).startswith(f"{name}: {expected}, e.g. {name}=")
    assert repr(value) not in str(info.value)  # the value may be a secret: never repeated


def test_json_values_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALERT_ANOMALY_INPUT__TOPICS", '["^lc_classifier_ztf_[0-9]{8}$"]')
    monkeypatch.setenv("ALERT_ANOMALY_KAFKA__EXTRA", '{"socket.keepalive.enable": "true"}')
    s = load_settings(None)
    assert s.input.topics == ["^lc_classifier_ztf_[0-9]{8}$"]
    assert s.kafka.extra == {"socket.keepalive.enable": "true"}


def test_unknown_keys_in_a_file_are_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[input]\ntopics = ["a"]\ntopix = ["b"]\n')
    with pytest.raises(SettingsError, match=r"invalid setting input.topix: unknown setting"):
        load_settings(path)
