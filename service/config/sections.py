"""The ``input``, ``output``, ``model`` and ``batch`` sections and :class:`Settings`, which holds
them all with their sources (command line, environment, file, defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from models.resources import bundles_dir
from models.scorers import DEFAULT_SCORERS, SCORER_KINDS, SURVEY_DEFAULT_SCORERS, ScorerKind
from service.config.base import ENV_PREFIX, Section
from service.config.kafka import KafkaSettings
from service.config.streams import InputSettings, OutputSettings


class ModelSettings(Section):
    """Which bundles score which alerts."""

    survey: str = Field("ztf", description="survey adapter: ztf or lsst")
    bundles_dir: Path = Field(
        default_factory=bundles_dir,
        description="bundle root holding `<survey>/<class>-<scorer>/` bundle directories",
    )
    scorers: dict[str, ScorerKind] = Field(
        default_factory=lambda: dict(DEFAULT_SCORERS),
        description="top-level class (or All, the unrouted model) -> scorer "
        f"({', '.join(SCORER_KINDS)}); default for ztf: mcdsvdd-ens-lite for every class "
        "(better than the paper's best per class, docs/results.md); for lsst: the paper's best "
        "per class (mcdsvdd, ae, mcdsvdd) and All -> iforest",
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
    explain_features: int = Field(
        3,
        ge=0,
        le=64,
        description="every score's explanation: its k features of largest contribution (ae, "
        "vae: squared reconstruction error, adding up to the score; network SVDDs: gradient x "
        "input; iforest: path-based credit; distclassipy: none); 0 turns explanations off "
        "(nothing is computed, every record's explanation is empty); none is computed with "
        "output.format alerce (their step record has no field for it)",
    )
    explain_min_percentile: float = Field(
        90.0,
        ge=0.0,
        le=100.0,
        description="explain only the scores at or above this percentile (the candidates an "
        "expert looks at; the others' explanation is empty): the network SVDDs' explanation "
        "costs more than their score, so explaining every alert would cut the service's rate "
        "by a third; 0 explains every score",
    )
    reranker: Path | None = Field(
        None,
        description="directory of an expert's re-ranker (`verdicts retrain`, extra rerank): "
        "each score also gets its reranked_percentile and the re-ranker's identity; a new "
        "re-ranker placed there (best: a symlink swapped with `mv -T`) is loaded between "
        "micro-batches without a restart (model.reload_interval_s); unset: null, nothing "
        "computed",
    )
    reload_interval_s: float = Field(
        10.0,
        ge=0,
        description="how often the service checks, between micro-batches, whether "
        "model.reranker or a bundle under model.bundles_dir changed (the real directory, the "
        "SHA-256 of its manifest.json, the size and time of its other files) and reloads it "
        "without a restart; 0: models are loaded once at start",
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


class BatchSettings(Section):
    """Micro-batching: a batch is scored when full, when its oldest alert is ``max_delay_ms``
    old, or - ``flush_when_idle`` - as soon as the input is quiet and the model idle."""

    max_rows: int = Field(1024, ge=1, le=65536, description="rows per micro-batch")
    max_delay_ms: float = Field(
        20.0,
        gt=0,
        le=60000,
        description="deadline of a micro-batch after its first alert (a late batch waits, and "
        "grows, while inference holds two batches: one scored, one queued)",
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

    profile: Literal["default", "alerce"] = Field(
        "default",
        description="alerce: also read the environment variables ALeRCE's deployments give "
        "their anomaly step (CONSUMER_SERVER, CONSUMER_TOPICS, PRODUCER_TOPIC_FORMAT, "
        "SCRIBE_TOPIC, METRICS_TOPIC, their SASL...; service/config/alerce.py), below ours and "
        "the command line, above the config file (README: In ALeRCE's pipeline); chosen by "
        "this variable, not by a config file",
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

    @property
    def explained_features(self) -> int:
        """How many features each score's explanation names: ``model.explain_features``, or 0
        where no output carries explanations - ``output.format alerce``: ALeRCE's step record
        has no field for them, so none is computed (the network SVDDs' backward pass is the
        largest cost of a score)."""
        return 0 if self.output.format == "alerce" else self.model.explain_features

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
