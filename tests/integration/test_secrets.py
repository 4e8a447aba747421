"""No secret in any output: known secret values are set through every documented path (the
environment, TOML and YAML config files, kafka.extra/consumer/producer JSON), every kind of error
is provoked, and stdout, stderr (logs at debug level, librdkafka's debug lines included), /metrics,
/healthz and /readyz of the CLI's subprocesses are searched for them.

No command-line option sets a secret (checked below): that path has nothing to cover.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from service.commands.args import SETTING_FLAGS
from service.config import ENV_PREFIX, SECRET_MASK, KafkaSettings, is_secret_property
from service.io.kafka import create_topics
from tests.integration.conftest import TEST_CONSUMER, ServiceProcess
from tests.integration.test_service import service_args

CLI = [sys.executable, "-m", "service.cli", "--log-format", "json", "--log-level", "debug"]

# one distinct value per path, so that a leak names its path
SECRETS = {
    "env sasl_password": "EnvSaslPw-4f9Kq",
    "env ssl_key_password": "EnvKeyPw-8Zr2w",
    "env extra sasl.oauthbearer.client.secret": "EnvOauthSecret-x7Lp",
    "env consumer ssl.keystore.password": "EnvKeystorePw-Qm3v",
    "env extra token url": "https://EnvTokenUrl-3Sd9.example/token",
    "env producer sasl.password": "EnvProducerPw-Tn5c",
    "toml sasl_password": "TomlSaslPw-2Hd8",
    "toml extra ssl.key.password": "TomlExtraKeyPw-9Bw1",
    "yaml sasl_password": "YamlSaslPw-6Jf4",
    "yaml ssl_key_password": "YamlKeyPw-3Vx7",
    "bad json": "BadJsonPw-5Rk0",
    "bad section json": "BadSectionPw-1Gt6",
    "bad type": "BadTypePw-7Ys2",
    "unknown key": "UnknownKeyPw-0Pq9",
    "unknown variable": "UnknownVarPw-4Wm3",
    "bad toml": "BadTomlPw-8Ce5",
    "bad yaml": "BadYamlPw-2Nu1",
    "unknown property": "UnknownPropPw-6Lz8",
}
S = SECRETS


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without ALERT_ANOMALY_*, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return env | {ENV_PREFIX + k: v for k, v in variables.items()}


SASL_ENV = {
    "KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
    "KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA__SASL_USERNAME": "anomaly",
    "KAFKA__SASL_PASSWORD": S["env sasl_password"],
    "KAFKA__SSL_KEY_PASSWORD": S["env ssl_key_password"],
    "KAFKA__EXTRA": json.dumps(
        {
            "sasl.oauthbearer.client.secret": S["env extra sasl.oauthbearer.client.secret"],
            # a secret by its name here, not for librdkafka: its debug lines print it
            "sasl.oauthbearer.token.endpoint.url": S["env extra token url"],
            "debug": "broker,security,conf,generic",  # librdkafka's own lines, at debug level
        }
    ),
    "KAFKA__CONSUMER": json.dumps(
        {
            "ssl.keystore.password": S["env consumer ssl.keystore.password"],
            **json.loads(TEST_CONSUMER),
        }
    ),
    "KAFKA__PRODUCER": json.dumps({"sasl.password": S["env producer sasl.password"]}),
    "KAFKA__UNAVAILABLE_TIMEOUT_S": "4",
    "INPUT__TOPICS": '["lc_classifier"]',
    "METRICS_PORT": "0",
}


def assert_no_secret(*outputs: str) -> None:
    for output in outputs:
        for path, secret in SECRETS.items():
            assert secret not in output, f"the secret of {path} leaked:\n{output[-3000:]}"


def cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert_no_secret(result.stdout, result.stderr)
    return result


def one_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The one error line of a command that failed with status 2, containing ``words``."""
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    for word in words:
        assert word in errors[0]
    return errors[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def config_files(tmp_path: Path) -> tuple[Path, Path]:
    toml = tmp_path / "secrets.toml"
    toml.write_text(
        "[kafka]\n"
        'security_protocol = "SASL_PLAINTEXT"\n'
        'sasl_mechanism = "SCRAM-SHA-256"\n'
        'sasl_username = "anomaly"\n'
        f'sasl_password = "{S["toml sasl_password"]}"\n'
        "unavailable_timeout_s = 4\n"
        f'extra = {{"ssl.key.password" = "{S["toml extra ssl.key.password"]}"}}\n'
        "[input]\n"
        'topics = ["lc_classifier"]\n'
    )
    yaml_file = tmp_path / "secrets.yaml"
    yaml_file.write_text(
        "kafka:\n"
        "  security_protocol: SASL_PLAINTEXT\n"
        "  sasl_mechanism: PLAIN\n"
        "  sasl_username: anomaly\n"
        f"  sasl_password: {S['yaml sasl_password']}\n"
        f"  ssl_key_password: {S['yaml ssl_key_password']}\n"
        "  unavailable_timeout_s: 4\n"
        "input:\n"
        "  topics: [lc_classifier]\n"
    )
    return toml, yaml_file


def test_no_option_sets_a_secret() -> None:
    """Were one added, this test would have to set a secret through it."""
    assert not [f for f, spec in SETTING_FLAGS.items() if is_secret_property(spec.path[-1])]


def test_settings_and_offline_check_mask_every_secret(config_files: tuple[Path, Path]) -> None:
    for config in config_files:
        shown = cli("settings", "--config", str(config), env=environment())
        assert shown.returncode == 0, shown.stderr
        assert SECRET_MASK in shown.stdout
        checked = cli("run", "--check", "--offline", "--config", str(config), env=environment())
        assert checked.returncode == 0, checked.stderr[-3000:]
    shown = cli("settings", "--json", env=environment(**SASL_ENV))
    assert shown.returncode == 0, shown.stderr
    rows = {row["setting"]: row for row in json.loads(shown.stdout)}
    assert rows["kafka.sasl_password"]["value"] == SECRET_MASK
    assert rows["kafka.sasl_password"]["source"] == "ALERT_ANOMALY_KAFKA__SASL_PASSWORD"
    assert rows["kafka.extra"]["value"]["sasl.oauthbearer.client.secret"] == SECRET_MASK
    assert rows["kafka.extra"]["value"]["debug"] == "broker,security,conf,generic"
    checked = cli("run", "--check", "--offline", env=environment(**SASL_ENV))
    assert checked.returncode == 0, checked.stderr[-3000:]


def test_errors_of_every_kind_name_no_secret(tmp_path: Path) -> None:
    base = {k: v for k, v in SASL_ENV.items() if not k.startswith("KAFKA__EXTRA")}
    cases = [
        # invalid JSON: a property map, and a whole section
        ({"KAFKA__EXTRA": '{"sasl.password": "' + S["bad json"] + '", '}, "KAFKA__EXTRA"),
        ({"KAFKA": '{"sasl_password": "' + S["bad section json"]}, "ALERT_ANOMALY_KAFKA:"),
        # valid JSON of the wrong shape: a bare string, a secret property that is not a string
        ({"KAFKA__EXTRA": json.dumps(S["bad json"])}, "JSON string"),
        ({"KAFKA__EXTRA": json.dumps({"sasl.password": [S["bad type"]]})}, "sasl.password"),
        # an invalid value beside the secrets, and a misspelled variable holding one
        ({"KAFKA__SASL_MECHANISM": "SCRAM-SHA-1"}, "kafka.sasl_mechanism"),
        ({"KAFKA__SASL_PASWORD": S["unknown variable"]}, "ALERT_ANOMALY_KAFKA__SASL_PASWORD"),
        # a property librdkafka does not know, holding a secret
        ({"KAFKA__EXTRA": json.dumps({"sasl.pasword": S["unknown property"]})}, "sasl.pasword"),
    ]
    for variables, word in cases:
        result = cli("run", "--check", "--offline", env=environment(**(base | variables)))
        one_error(result, word)
        # `settings` fails the same way, except for the name only librdkafka checks: it shows
        # that property's value masked
        settings = cli("settings", env=environment(**(base | variables)))
        assert settings.returncode == (0 if word == "sasl.pasword" else 2), settings.stderr
    files = {  # name: (text, what the error line names)
        "type.toml": (f'[kafka]\nsasl_password = ["{S["bad type"]}"]\n', "kafka.sasl_password"),
        "unknown.toml": (f'[kafka]\nsasl_pasword = "{S["unknown key"]}"\n', "kafka.sasl_pasword"),
        "syntax.toml": (f'[kafka]\nsasl_password = "{S["bad toml"]}\n', "syntax.toml"),
        "syntax.yaml": (f'kafka:\n  sasl_password: "{S["bad yaml"]}\n  x: [1\n', "syntax.yaml"),
        "mapping.yaml": (f"kafka:\n  sasl_password: {S['bad yaml']}: x\n", "mapping.yaml"),
        "type.yaml": (f"kafka:\n  ssl_key_password: [{S['bad type']}]\n", "ssl_key_password"),
    }
    for name, (text, word) in files.items():
        (tmp_path / name).write_text(text)
        config = str(tmp_path / name)
        one_error(cli("run", "--check", "--offline", "--config", config, env=environment()), word)
        one_error(cli("settings", "--config", config, env=environment()), word)


@pytest.mark.slow  # 61 s alone on 2 quiet cores: `make slow`
def test_broker_errors_name_no_secret(
    kafka_bootstrap: str, config_files: tuple[Path, Path]
) -> None:
    # unreachable broker (refused), with the secrets from the environment and from each file
    unreachable = f"127.0.0.1:{closed_port()}"
    result = cli("run", "--check", "--bootstrap-servers", unreachable, env=environment(**SASL_ENV))
    one_error(result, unreachable)
    for config in config_files:
        result = cli(
            "run",
            "--check",
            "--config",
            str(config),
            "--bootstrap-servers",
            unreachable,
            env=environment(),
        )
        one_error(result, unreachable)
    # SASL against a broker without it: the handshake fails
    result = cli(
        "run", "--check", "--bootstrap-servers", kafka_bootstrap, env=environment(**SASL_ENV)
    )
    assert result.returncode != 0
    for config in config_files:
        result = cli(
            "run",
            "--check",
            "--config",
            str(config),
            "--bootstrap-servers",
            kafka_bootstrap,
            env=environment(),
        )
        assert result.returncode != 0


def test_the_running_service_shows_no_secret(kafka_bootstrap: str, topic_prefix: str) -> None:
    """Secrets set but unused (PLAINTEXT): the service runs, logs at debug level with
    librdkafka's debug lines and serves /metrics, /healthz and /readyz."""
    names = [f"{topic_prefix}-in", f"{topic_prefix}-scores", f"{topic_prefix}-dlq"]
    create_topics(KafkaSettings(bootstrap_servers=kafka_bootstrap), names)
    plain = SASL_ENV | {"KAFKA__SECURITY_PROTOCOL": "PLAINTEXT"}
    plain.pop("KAFKA__SASL_MECHANISM")
    env = {ENV_PREFIX + k: v for k, v in plain.items()}
    service = ServiceProcess(
        service_args(kafka_bootstrap, (names[0], names[1], names[2]), topic_prefix),
        env=env,
        log_level="debug",
    )
    try:
        service.assigned(timeout=120)
        url = service.event("metrics_serving")["url"]
        pages = []
        for path in ("/metrics", "/healthz", "/readyz"):
            with urllib.request.urlopen(url.replace("/metrics", path), timeout=10) as response:
                pages.append(response.read().decode())
        assert "alert_anomaly_" in pages[0]
        assert service.terminate() == 0
    finally:
        if service.process.poll() is None:
            service.kill()
    service._reader.join(10)  # the whole of stderr
    assert service.process.stdout is not None
    assert_no_secret(*pages, "".join(service.raw), service.process.stdout.read())
    assert any("librdkafka" in line or "CONF" in line for line in service.raw)  # debug lines seen
