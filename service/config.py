"""Settings of the streaming service (pydantic-settings).

Sources, highest precedence first: command-line overrides, environment variables
(``ALERT_ANOMALY_<SECTION>__<KEY>``, e.g. ``ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS``; lists and maps
as JSON), an optional TOML or YAML file (``--config``), the defaults below. Unknown keys are
rejected in every source; everything is validated at start-up and reported as one line.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
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

ENV_PREFIX = "ALERT_ANOMALY_"
InputFormat = Literal["schemaless", "container", "confluent", "json"]
OutputFormat = Literal["schemaless", "confluent", "json"]
ClientConfig = dict[str, str | int | float | bool]  # librdkafka properties

ENV_DOC = "the README's configuration reference"


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
        description="when no broker has answered for this long, a command gives up: the "
        "service drains what it can and exits with status 3 (/readyz fails at once)",
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
        None, gt=0, description="exit after this long without input (batch jobs); default never"
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


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Unknown ``ALERT_ANOMALY_*`` variables (with the closest valid name) and list or map
    values that are not JSON, each as one line naming the variable (default: os.environ)."""
    environ = os.environ if environ is None else environ
    known = environment_names()
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = known.get(key)
        if path is None:
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
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError:
            loaded = None
        expected = list if origin is list else dict
        if not isinstance(loaded, expected):
            example = '["a", "b"]' if expected is list else '{"key": "value"}'
            kind = "list" if expected is list else "object"
            raise SettingsError(
                f"{key}: expected a JSON {kind}, e.g. {key}='{example}', got {value!r}"
            )


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    return f"invalid setting {where}: {message}{more}" if where else f"invalid settings: {message}"


def load_settings(
    config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from overrides > environment > config file > defaults, or a SettingsError."""
    check_environment()
    cls = _with_file(config_file) if config_file is not None else Settings
    try:
        return cls(**dict(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(f"config file {config_file} is not valid: {exc}") from None
    except SourceError as exc:
        raise SettingsError(str(exc)) from None


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
