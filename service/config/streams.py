"""The ``input`` and ``output`` sections: what is read and how it is decoded, where scores and dead
letters go; ``kind`` names an entry of the registries (:mod:`service.registry`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from models.exceptions import DataError
from service.config.base import InputFormat, OutputFormat, Section, parse_time_ms
from service.io.storage import Location, checked_location
from service.io.topics import (
    ALERCE_CHANGE_HOUR,
    ALERCE_DATE_FORMAT,
    ALERCE_RETENTION_DAYS,
    DailyTopics,
    FixedTopics,
    TopicStrategy,
)

# a local path, or an object-storage URI kept as text (s3://bucket/prefix: service.io.storage)
PathOrUri = Annotated[Location, BeforeValidator(checked_location)]


class InputSettings(Section):
    """What to consume and how to decode it."""

    kind: str = Field(
        "kafka",
        description="where alerts come from (service.registry.SOURCES): kafka (a consumer group: "
        "run), topic_range (a bounded range of topics[0]: replay) or files (paths: replay, "
        "score, top)",
    )
    paths: list[PathOrUri] = Field(
        default_factory=list,
        description="kind files: Avro alert files, Avro containers, directories, tarballs, "
        "Parquet/CSV tables; local paths or s3://bucket/key URIs (README: Replays and offline "
        "scoring)",
    )
    partitions: list[int] | None = Field(
        None, description="kind topic_range: the partitions to read (default: all)"
    )
    since: str | None = Field(
        None, description="kind topic_range: first message time, ISO-8601 (UTC) or epoch ms"
    )
    until: str | None = Field(
        None, description="kind topic_range: end time (exclusive), ISO-8601 (UTC) or epoch ms"
    )
    start_offsets: dict[int, int] = Field(
        default_factory=dict, description="kind topic_range: partition -> first offset"
    )
    end_offsets: dict[int, int] = Field(
        default_factory=dict, description="kind topic_range: partition -> end offset (exclusive)"
    )
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
        description="auto: the stream's learned layouts and Rubin alert packets decoded by "
        "compiled loops over each consumed batch, the rest with fastavro; generic: fastavro only",
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

    @model_validator(mode="after")
    def _known_kind(self) -> InputSettings:
        from service.registry import SOURCES

        if self.kind not in SOURCES:
            raise ValueError(f"kind {self.kind!r} is unknown (known: {', '.join(SOURCES)})")
        if self.kind == "files" and not self.paths:
            raise ValueError("kind files needs paths")
        if self.kind == "topic_range" and len(self.topics) != 1:
            raise ValueError("kind topic_range reads one topic: give exactly one in topics")
        for moment in (self.since, self.until):
            if moment is not None:
                try:
                    parse_time_ms(moment)
                except DataError as exc:
                    raise ValueError(str(exc)) from None
        return self


class OutputSettings(Section):
    """Where scores and dead letters go."""

    kind: str = Field(
        "kafka",
        description="where outputs go (service.registry.SINKS): kafka (topic and "
        "dead_letter_topic), parquet (a resumable dataset directory at path: replay) or memory "
        "(score, top)",
    )
    path: PathOrUri | None = Field(
        None, description="kind parquet: the dataset directory, a local path or s3://bucket/prefix"
    )
    resume: bool = Field(
        False, description="kind parquet: continue the interrupted replay found at path"
    )
    topic: str = Field("anomaly-scores", description="topic of the anomaly scores")
    format: OutputFormat = Field(
        "schemaless",
        description="the anomaly-score record as schemaless Avro, confluent or json; alerce: the "
        "record ALeRCE's anomaly step publishes instead (their output_ztf.avsc, the input's "
        "features passed through; kind kafka; README: In ALeRCE's pipeline)",
    )
    confluent_schema_id: int | None = Field(
        None, description="schema id written in the confluent wire format (format confluent)"
    )
    dead_letter_topic: str = Field(
        "anomaly-scores-dlq", description="topic receiving the original bytes of bad messages"
    )
    topic_strategy: Literal["fixed", "daily"] = Field(
        "fixed",
        description="fixed: topic and dead_letter_topic; daily: a topic a day named as ALeRCE's "
        "DailyTopicStrategy names it (topic_format, dead_letter_topic_format, date_format, "
        "change_hour): each output goes once to the newest topic their strategy lists when it "
        "is first produced (README: Output topics)",
    )
    topic_format: str | None = Field(
        None,
        description="topic_strategy daily: the score topic with one %s where the date goes "
        "(ALeRCE's PRODUCER_TOPIC_FORMAT, e.g. lc_anomaly_%s); default: topic + _%s",
    )
    dead_letter_topic_format: str | None = Field(
        None,
        description="topic_strategy daily: the dead-letter topic with one %s; default: "
        "dead_letter_topic + _%s",
    )
    date_format: str = Field(
        ALERCE_DATE_FORMAT,
        description="topic_strategy daily: strftime format of the UTC date in a topic name "
        "(PRODUCER_DATE_FORMAT)",
    )
    change_hour: int = Field(
        ALERCE_CHANGE_HOUR,
        description="topic_strategy daily: the UTC hour (0-23) from which outputs go to the next "
        "day's topic (PRODUCER_CHANGE_HOUR)",
    )
    retention_days: int = Field(
        ALERCE_RETENTION_DAYS,
        ge=1,
        description="topic_strategy daily: how many days of topics ALeRCE's consumers keep "
        "listing (PRODUCER_RETENTION_DAYS); kept for their settings, it does not change where "
        "outputs go",
    )

    scribe_topic: str | None = Field(
        None,
        description="ALeRCE's database writes: a scribe command per scored object to this topic "
        "(their SCRIBE_TOPIC; schemaless Avro of their scribe.avsc; README: In ALeRCE's "
        "pipeline); unset: none. Kind kafka",
    )
    detector_name: str = Field(
        "alert_anomaly",
        min_length=1,
        description="the detector name in scribe commands (their rows are NAME_top with the "
        "routed top class as category)",
    )

    metrics_topic: str | None = Field(
        None,
        description="step metrics as ALeRCE's steps report them (apf's KafkaMetricsProducer: "
        "JSON per scored batch with timestamp_received/timestamp_sent) to this topic (their "
        "METRICS_TOPIC), beside Prometheus; unset: none. Kind kafka",
    )
    metrics_source: str = Field(
        "alert-anomaly",
        min_length=1,
        description="the source field of step metrics (their METRICS_SOURCE)",
    )
    metrics_survey: str | None = Field(
        None, description="the survey field of step metrics (their METRICS_SURVEY; null if unset)"
    )

    @model_validator(mode="after")
    def _confluent_needs_id(self) -> OutputSettings:
        if self.format == "confluent" and self.confluent_schema_id is None:
            raise ValueError("format confluent needs confluent_schema_id")
        return self

    @model_validator(mode="after")
    def _known_kind(self) -> OutputSettings:
        from service.registry import SINKS

        if self.kind not in SINKS:
            raise ValueError(f"kind {self.kind!r} is unknown (known: {', '.join(SINKS)})")
        if self.kind == "parquet" and self.path is None:
            raise ValueError("kind parquet needs path")
        if self.format == "alerce" and self.kind != "kafka":
            raise ValueError(f"format alerce is for kind kafka (it is {self.kind})")
        for name in ("scribe_topic", "metrics_topic"):
            if getattr(self, name) is not None and self.kind != "kafka":
                raise ValueError(f"{name} is for kind kafka (it is {self.kind})")
        return self

    @model_validator(mode="after")
    def _daily_topics(self) -> OutputSettings:
        daily_only = sorted(self.model_fields_set & set(_DAILY_ONLY))
        if self.topic_strategy == "fixed" and daily_only:
            raise ValueError(f"{daily_only[0]} is for topic_strategy daily (it is fixed)")
        if self.topic_strategy == "daily":
            daily_topics(self)  # a ConfigurationError (a ValueError) names what is wrong
        return self


_DAILY_ONLY = (
    "topic_format",
    "dead_letter_topic_format",
    "date_format",
    "change_hour",
    "retention_days",
)


def topic_strategy(output: OutputSettings) -> TopicStrategy:
    """The topics of ``output``: fixed, or daily."""
    if output.topic_strategy == "daily":
        return daily_topics(output)
    return FixedTopics(output.topic, output.dead_letter_topic)


def daily_topics(output: OutputSettings) -> DailyTopics:
    """The daily topics of ``output`` (its formats default to the fixed names + ``_%s``)."""
    return DailyTopics(
        output.topic_format or f"{output.topic}_%s",
        output.dead_letter_topic_format or f"{output.dead_letter_topic}_%s",
        output.date_format,
        output.change_hour,
        output.retention_days,
    )
