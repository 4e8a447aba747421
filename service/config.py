"""Settings of the streaming service (pydantic-settings).

Sources, highest precedence first: command-line overrides, environment variables
(``ALERT_ANOMALY_<SECTION>__<KEY>``, e.g. ``ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS``; lists and maps
as JSON), an optional TOML or YAML file (``--config``), the defaults below. Unknown keys are
rejected in every source; everything is validated at start-up and reported as one line.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from models.resources import bundles_dir
from models.scorers import DEFAULT_SCORERS, SURVEY_DEFAULT_SCORERS, ScorerKind
from service.exceptions import SettingsError
from service.ops import redaction

ENV_PREFIX = "ALERT_ANOMALY_"
InputFormat = Literal["schemaless", "container", "confluent", "json"]
OutputFormat = Literal["schemaless", "confluent", "json"]
ClientConfig = dict[str, str | int | float | bool]  # librdkafka properties

ENV_DOC = "the README's configuration reference"

SECRET_MASK = "**********"
# librdkafka properties whose values are secrets (sasl.password, ssl.key.password,
# sasl.oauthbearer.client.secret, ssl.keystore.password...): their names contain one of these
SECRET_NAME_PARTS = ("password", "secret", "token", "key")


def is_secret_property(name: str) -> bool:
    """Whether a librdkafka property (or a setting's name) holds a secret: its name contains
    password, secret, token or key, or a word of it is a misspelling of the first three
    (``sasl.pasword``: librdkafka rejects the name, its value must not show either)."""
    lowered = name.lower()
    if any(part in lowered for part in SECRET_NAME_PARTS):
        return True
    words = re.split(r"[._\-]", lowered)
    return any(difflib.get_close_matches(w, SECRET_NAME_PARTS[:3], cutoff=0.8) for w in words)


def masked_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Client properties with the values of secret ones replaced by :data:`SECRET_MASK`."""
    return {k: SECRET_MASK if is_secret_property(k) else v for k, v in properties.items()}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """Connection to the brokers; exported as librdkafka properties."""

    bootstrap_servers: str = Field(
        "localhost:9092", description="comma-separated host:port list of the Kafka brokers"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="librdkafka security.protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(None, description="librdkafka sasl.mechanism (required with SASL_*)")
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_ca_location: Path | None = Field(None, description="CA certificate file (PEM)")
    ssl_certificate_location: Path | None = Field(None, description="client certificate (PEM)")
    ssl_key_location: Path | None = Field(None, description="client private key (PEM)")
    ssl_key_password: SecretStr | None = Field(None, description="password of the private key")
    unavailable_timeout_s: float = Field(
        120.0,
        gt=0,
        description="how long a command waits for a Kafka broker, with a log line every 15 s: "
        "at start, when none has answered yet, it gives up with exit status 2 (after 10 s "
        "when every bootstrap address refuses connections); when brokers that answered are "
        "gone this long, the service drains what it can and exits with status 3 (/readyz "
        "fails at once, /healthz does not)",
    )
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="further librdkafka properties for every client, passed through verbatim, "
        'e.g. {"socket.keepalive.enable": "true"}',
    )
    consumer: dict[str, str] = Field(
        default_factory=dict,
        description='librdkafka properties for the consumer only, e.g. {"session.timeout.ms": '
        '"45000"}',
    )
    producer: dict[str, str] = Field(
        default_factory=dict,
        description='librdkafka properties for the producer only, e.g. {"linger.ms": "20"}',
    )

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512") and not (
            self.sasl_username and self.sasl_password
        ):
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username/password")
        return self

    def librdkafka(self) -> ClientConfig:
        """The client properties, secrets included (pass to confluent-kafka only)."""
        conf: ClientConfig = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        optional: dict[str, str | Path | SecretStr | None] = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        for key, value in optional.items():
            if isinstance(value, SecretStr):
                conf[key] = value.get_secret_value()
            elif value is not None:
                conf[key] = str(value)
        conf.update(self.extra)
        return conf

    def secret_values(self) -> set[str]:
        """Every secret among these settings: the SASL and key passwords and the values of
        secret-named properties (:func:`is_secret_property`) in extra, consumer and producer."""
        values = {s.get_secret_value() for s in (self.sasl_password, self.ssl_key_password) if s}
        for properties in (self.extra, self.consumer, self.producer):
            values.update(v for k, v in properties.items() if is_secret_property(k) and v)
        return values


class InputSettings(_Section):
    """What to consume and how to decode it."""

    topics: list[str] = Field(
        default_factory=list,
        description="topics to consume (required by `run`); a name starting with ^ is a regular "
        "expression, e.g. ^lc_classifier_ztf_[0-9]{8}$ for ALeRCE's daily topics",
    )
    format: InputFormat = Field(
        "schemaless",
        description="schemaless Avro (ALeRCE's producers), container (Avro object container, "
        "schema embedded), confluent (magic byte + schema id; the default for lsst without "
        "input.schema_version, as Rubin's stream) or json",
    )
    schema_version: str | None = Field(
        None,
        description="version of the survey's input record under schemas/ (ztf: 3 = "
        "ALeRCE's current record keyed by oid, 2 and 1 = the earlier ones keyed by aid; lsst: "
        "a Rubin alert-packet version such as 11.1, or 1.0 for records with classifier "
        "probabilities); default: the current one (lsst: the latest alert packet)",
    )
    schema_file: Path | None = Field(
        None, description="Avro schema of schemaless input (instead of schema_version)"
    )
    confluent_schemas: dict[int, Path] = Field(
        default_factory=dict,
        description="schema id -> .avsc file, for the confluent format (survey lsst knows "
        "Rubin's alert-packet ids; entries here add to them)",
    )
    decoder: Literal["auto", "generic"] = Field(
        "auto",
        description="auto: the stream's learned layouts decoded by a compiled loop over each "
        "consumed batch, the rest with fastavro; generic: fastavro only",
    )
    group_id: str = Field("alert-anomaly", description="consumer group id")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a new consumer group starts"
    )

    @model_validator(mode="after")
    def _one_schema_source(self) -> InputSettings:
        if self.schema_file is not None and self.schema_version is not None:
            raise ValueError("set schema_version or schema_file, not both")
        return self


class OutputSettings(_Section):
    """Where scores and dead letters go."""

    topic: str = Field("anomaly-scores", description="topic of the anomaly scores")
    format: OutputFormat = Field("schemaless", description="schemaless Avro, confluent or json")
    confluent_schema_id: int | None = Field(
        None, description="schema id written in the confluent wire format (format confluent)"
    )
    dead_letter_topic: str = Field(
        "anomaly-scores-dlq", description="topic receiving the original bytes of bad messages"
    )

    @model_validator(mode="after")
    def _confluent_needs_id(self) -> OutputSettings:
        if self.format == "confluent" and self.confluent_schema_id is None:
            raise ValueError("format confluent needs confluent_schema_id")
        return self


class ModelSettings(_Section):
    """Which bundles score which alerts."""

    survey: str = Field("ztf", description="survey adapter: ztf or lsst")
    bundles_dir: Path = Field(
        default_factory=bundles_dir,
        description="bundle root holding `<survey>/<class>-<scorer>/` bundle directories",
    )
    scorers: dict[str, ScorerKind] = Field(
        default_factory=lambda: dict(DEFAULT_SCORERS),
        description="top-level class (or All, the unrouted model) -> scorer (mcdsvdd, ae, "
        "deepsvdd, vae, mcdsvdd-nn, mcdsvdd-ens, iforest, distclassipy); default: the paper's "
        "best per class (mcdsvdd-ens, our variant, scores better: docs/results.md), "
        "and for lsst also All -> iforest",
    )
    min_feature_coverage: float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="an alert whose record carries less than this share of its model's features "
        "(by name; null values count as carried) goes to the dead-letter topic as "
        "low_feature_coverage",
    )
    min_feature_values: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="an alert whose record has a value (not null) for less than this share of "
        "its model's features goes to the dead-letter topic as null_features (0 turns it off); "
        "measured per alert on the committed samples: ztf 0.25 to 1 (1% below 0.35, median "
        "0.95), lsst 0.53 to 1 (median 0.94)",
    )
    device: str = Field("auto", description="torch device: auto, cpu, cuda, cuda:1...")
    cpu_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="torch CPU threads for inference (more only pays off for large batches)",
    )
    inference: Literal["auto", "process", "inline"] = Field(
        "auto",
        description="where the networks run: a worker process of their own (process), the "
        "service's thread (inline), or process when the service may use 2+ CPU cores (auto)",
    )

    @model_validator(mode="before")
    @classmethod
    def _survey_default_scorers(cls, data: Any) -> Any:
        """Without model.scorers, the survey's defaults (LSST's include its unrouted model)."""
        if isinstance(data, dict) and "scorers" not in data:
            survey = data.get("survey", "ztf")
            return {**data, "scorers": dict(SURVEY_DEFAULT_SCORERS.get(survey, DEFAULT_SCORERS))}
        return data


class BatchSettings(_Section):
    """Micro-batching: a batch is scored when full, when its oldest alert is ``max_delay_ms``
    old, or - ``flush_when_idle`` - as soon as the input is quiet and the model idle."""

    max_rows: int = Field(1024, ge=1, le=65536, description="rows per micro-batch")
    max_delay_ms: float = Field(
        20.0, gt=0, le=60000, description="deadline of a micro-batch after its first alert"
    )
    flush_when_idle: bool = Field(
        True,
        description="score open batches before their deadline when a read finds no new input "
        "and no batch is being scored (waiting would only add latency; costs one padded "
        "32-row chunk per class at each quiet moment)",
    )


class Settings(BaseSettings):
    """All settings of ``alert-anomaly run``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    input: InputSettings = Field(default_factory=InputSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    commit_interval_ms: int = Field(
        1000, ge=10, description="how often acknowledged offsets are committed"
    )
    metrics_port: int | None = Field(
        9108, ge=0, le=65535, description="port of /metrics, /healthz, /readyz (0: any free)"
    )
    drain_timeout_s: float = Field(
        60.0,
        gt=0,
        description="at shutdown or revocation, how long to wait for pending scores to be "
        "acknowledged (keep the orchestrator's grace period longer)",
    )
    stop_after_idle_s: float | None = Field(
        None,
        gt=0,
        description="exit after this long without input, counted from the partition assignment "
        "(batch jobs); default never",
    )

    @model_validator(mode="before")
    @classmethod
    def _survey_input_format(cls, data: Any) -> Any:
        """Rubin's alert stream is in the Confluent wire format: LSST's default input format,
        unless a record version is chosen (``schema_version``: the classifier record, or
        unframed packets of one version)."""
        if not isinstance(data, dict):
            return data
        model, given = data.get("model"), data.get("input")
        survey = model.get("survey") if isinstance(model, dict) else None
        if survey == "lsst" and (given is None or isinstance(given, dict)):
            given = given or {}
            if "format" not in given and "schema_version" not in given:
                return {**data, "input": {**given, "format": "confluent"}}
        return data

    @model_validator(mode="after")
    def _confluent_needs_schemas(self) -> Settings:
        # Rubin's alert packets name their schema by Rubin's registry ids, known to the survey
        if (
            self.input.format == "confluent"
            and not self.input.confluent_schemas
            and self.model.survey != "lsst"
        ):
            raise ValueError(
                "input.format confluent needs input.confluent_schemas (schema id -> .avsc file)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the file of load_settings(config_file=...): its TOML or YAML source reads it
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls),
            YamlConfigSettingsSource(settings_cls),
        )


def _with_file(path: Path) -> type[Settings]:
    """Settings whose TOML or YAML source reads ``path``."""
    if not path.is_file():
        raise SettingsError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        key = "toml_file"
    elif suffix in (".yaml", ".yml"):
        key = "yaml_file"
    else:
        raise SettingsError(f"config file {path}: use .toml, .yaml or .yml")
    config = dict(Settings.model_config)
    config[key] = path
    return type("Settings", (Settings,), {"model_config": config})


def environment_names() -> dict[str, tuple[str, ...]]:
    """Every ``ALERT_ANOMALY_*`` variable a setting (or a whole section) can be given by, with
    its setting's path."""
    names: dict[str, tuple[str, ...]] = {}

    def add(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            here = (*path, name)
            names[ENV_PREFIX + "__".join(here).upper()] = here
            if isinstance(info.annotation, type) and issubclass(info.annotation, _Section):
                add(info.annotation, here)

    add(Settings, ())
    return names


def _field(path: tuple[str, ...]) -> Any:
    model: Any = Settings
    info = None
    for name in path:
        info = model.model_fields[name]
        model = info.annotation
    return info


# Kubernetes gives every pod the addresses of the Services of its namespace (unless the pod
# sets enableServiceLinks: false); a Service named alert-anomaly[-x] gives ALERT_ANOMALY_[X_]...
_LINK_URL = re.compile(r"(tcp|udp|sctp)://(\[[0-9a-fA-F:.]+\]|[0-9.]+):([0-9]+)")
_SERVICE_LINKS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(r"(?:[A-Z0-9_]+_)?" + suffix), shape)
    for suffix, shape in (
        (r"SERVICE_HOST", "ip"),  # 10.0.0.11
        (r"SERVICE_PORT(?:_[A-Z0-9_]+)?", "port"),  # 9108 (and per named port)
        (r"PORT", "url"),  # tcp://10.0.0.11:9108
        (r"PORT_(?P<port>[0-9]+)_(?P<proto>TCP|UDP|SCTP)", "url"),
        (r"PORT_[0-9]+_(?P<proto>TCP|UDP|SCTP)_PROTO", "proto"),  # tcp
        (r"PORT_(?P<port>[0-9]+)_(?:TCP|UDP|SCTP)_PORT", "port"),  # 9108
        (r"PORT_[0-9]+_(?:TCP|UDP|SCTP)_ADDR", "ip"),  # 10.0.0.11
    )
)


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _link_value(match: re.Match[str], shape: str, value: str) -> bool:
    fixed = match.groupdict()
    if shape == "ip":
        return _ip(value)
    if shape == "port":
        return value.isdigit() and fixed.get("port") in (None, value)
    if shape == "proto":
        return value == fixed["proto"].lower()
    url = _LINK_URL.fullmatch(value)
    return (
        url is not None
        and _ip(url[2])
        and fixed.get("port") in (None, url[3])
        and (fixed.get("proto") or url[1]).lower() == url[1]
    )


def is_service_link(name: str, value: str) -> bool:
    """Whether ``name=value`` is a variable Kubernetes injects for a Service named
    ``alert-anomaly[-*]``: ``{SVC}_SERVICE_HOST``, ``{SVC}_SERVICE_PORT[_{PORTNAME}]``,
    ``{SVC}_PORT`` and ``{SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]``, by name and by the
    shape of the value (an IP address, a port number, ``tcp://<ip>:<port>``, ``tcp``)."""
    if not name.startswith(ENV_PREFIX):
        return False
    rest = name.removeprefix(ENV_PREFIX)
    for pattern, shape in _SERVICE_LINKS:
        match = pattern.fullmatch(rest)
        if match is not None and _link_value(match, shape, value):
            return True
    return False


_JSON_KINDS = {str: "string", int: "number", float: "number", bool: "boolean", list: "list"}
_JSON_KINDS |= {dict: "object", type(None): "null"}


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Unknown ``ALERT_ANOMALY_*`` variables (with the closest valid name) and list or map
    values that are not JSON, each as one line naming the variable, never its value (it may be
    a secret); Kubernetes' service-link variables (:func:`is_service_link`) are not settings and
    pass (default: os.environ)."""
    environ = os.environ if environ is None else environ
    known = environment_names()
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = known.get(key)
        if path is None:
            if is_service_link(key, value):
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f" (known: see {ENV_DOC})"
            raise SettingsError(f"unknown environment variable {key}{hint}")
        annotation = _field(path).annotation
        origin = get_origin(annotation)
        structured = origin in (list, dict) or (
            isinstance(annotation, type) and issubclass(annotation, _Section)
        )
        if not structured:
            continue
        expected = list if origin is list else dict
        kind = "list" if expected is list else "object"
        example = '["a", "b"]' if expected is list else '{"key": "value"}'
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError as exc:  # position only: the value may hold a secret
            got = f"invalid JSON: {exc.msg} (character {exc.pos})"
        else:
            got = f"a JSON {_JSON_KINDS.get(type(loaded), 'value')}"
            if isinstance(loaded, expected):
                continue
        raise SettingsError(
            f"{key}: expected a JSON {kind}, e.g. {key}='{example}'; got {got} (value not shown)"
        )


def _secrets_in(value: Any, secret: bool) -> set[str]:
    """The strings of an input that are secrets (``secret``: the input is a secret's value)."""
    if isinstance(value, SecretStr):
        return {value.get_secret_value()}
    if isinstance(value, Mapping):
        found: set[str] = set()
        for key, item in value.items():
            found |= _secrets_in(item, secret or is_secret_property(str(key)))
        return found
    if secret and isinstance(value, str | int | float) and str(value):
        return {str(value)}
    return set()


def _one_line(exc: ValidationError) -> str:
    """The first error of a validation as one line, the values of secrets in it masked."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    secret = any(is_secret_property(str(p)) for p in first["loc"])
    for value in sorted(_secrets_in(first.get("input"), secret), key=len, reverse=True):
        message = message.replace(value, SECRET_MASK)
    return f"invalid setting {where}: {message}{more}" if where else f"invalid settings: {message}"


def _file_error(path: Path | None, exc: Exception) -> str:
    """A config file's syntax error as one line: the problem and where, never the text."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"config file {path} is not valid YAML: {exc.problem or exc.context}{at}"
    return f"config file {path} is not valid: {str(exc).splitlines()[0]}"


def load_settings(
    config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from overrides > environment > config file > defaults, or a SettingsError."""
    check_environment()
    cls = _with_file(config_file) if config_file is not None else Settings
    try:
        settings = cls(**dict(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(_file_error(config_file, exc)) from None
    except SourceError as exc:
        raise SettingsError(str(exc).splitlines()[0]) from None
    redaction.register(settings.kafka.secret_values())  # masked in every log line from now on
    return settings


@dataclass(frozen=True)
class SettingInEffect:
    """One setting as ``alert-anomaly settings`` prints it."""

    setting: str  # dotted, e.g. kafka.bootstrap_servers
    value: Any  # as JSON, secrets masked
    source: str  # default, config file <path>, the environment variable, the command-line option


KAFKA_PROPERTY_MAPS = ("extra", "consumer", "producer")


def _dig(data: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(data, Mapping) or key not in data:
            return False, None
        data = data[key]
    return True, data


def _file_data(path: Path) -> dict[str, Any]:
    """The raw content of a settings file (already validated by load_settings)."""
    text = path.read_text()
    data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    return data if isinstance(data, dict) else {}


def _env_source(path: tuple[str, ...], environ: Mapping[str, str]) -> str | None:
    """The variable that gives a setting: its own, or a section's JSON object holding it
    (names are case-insensitive, as pydantic-settings reads them)."""
    upper = {k.upper(): k for k in environ}
    for depth in range(len(path), 0, -1):
        name = ENV_PREFIX + "__".join(path[:depth]).upper()
        if name not in upper:
            continue
        if depth == len(path):
            return upper[name]
        try:
            found, _ = _dig(json.loads(environ[upper[name]]), path[depth:])
        except json.JSONDecodeError:
            found = False
        if found:
            return upper[name]
    return None


def _static_default(path: tuple[str, ...]) -> Any:
    info = _field(path)
    value = info.default_factory() if info.default_factory is not None else info.default
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def settings_in_effect(
    settings: Settings,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    override_names: Mapping[tuple[str, ...], str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[SettingInEffect]:
    """Every setting of ``settings`` with its value (secrets masked) and where it comes from:
    the highest-precedence source that gives it (a map merged from several sources names them
    all, highest first), or ``default``. ``override_names``: path -> command-line option."""
    environ = os.environ if environ is None else environ
    file_data = _file_data(config_file) if config_file is not None else {}
    values = settings.model_dump(mode="json")  # SecretStr -> "**********"
    rows: list[SettingInEffect] = []

    def add(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            here = (*path, name)
            if isinstance(info.annotation, type) and issubclass(info.annotation, _Section):
                add(info.annotation, here)
                continue
            value = _dig(values, here)[1]
            if here[0] == "kafka" and name in KAFKA_PROPERTY_MAPS:
                value = masked_properties(value)
            sources = []
            if _dig(overrides or {}, here)[0]:
                sources.append((override_names or {}).get(here, "command line"))
            variable = _env_source(here, environ)
            if variable is not None:
                sources.append(variable)
            if _dig(file_data, here)[0]:
                sources.append(f"config file {config_file}")
            if not isinstance(value, dict):
                sources = sources[:1]  # the highest wins; maps are merged
            if not sources:
                derived = value != _static_default(here) and name != "bundles_dir"
                sources.append(
                    f"default for model.survey {settings.model.survey}" if derived else "default"
                )
            rows.append(SettingInEffect(".".join(here), value, ", ".join(sources)))

    add(Settings, ())
    return rows


def reference_markdown() -> str:
    """The configuration reference table of the README, generated from the fields above."""
    lines = [
        "| setting | environment variable | default | description |",
        "|---|---|---|---|",
    ]

    def add(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, _Section):
                add(annotation, f"{prefix}{name}.")
                continue
            key = f"{prefix}{name}"
            env = ENV_PREFIX + key.replace(".", "__").upper()
            if info.default_factory is not None:
                default: Any = info.default_factory()  # type: ignore[call-arg]
            else:
                default = info.default
            shown = "(shipped bundles)" if name == "bundles_dir" else json_default(default)
            description = (info.description or "").replace("|", "\\|")
            lines.append(f"| `{key}` | `{env}` | {shown} | {description} |")

    add(Settings, "")
    return "\n".join(lines) + "\n"


def json_default(value: Any) -> str:
    """A default value as shown in the reference table."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value)}`" if value else "-"
    return f"`{value}`"
