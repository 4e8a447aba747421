"""The ``alerce`` settings profile: our settings from the environment variables ALeRCE's
deployments give their anomaly step (``lc_anomaly_step/settings.py`` in alercebroker/pipeline,
with its image's ``models_settings.py``, entry script and apf's step; the facts are in
tests/unit/upstream/alerce_settings.json), so that an operator swaps the image and keeps the
environment.

What maps (ours ``ALERT_ANOMALY_*`` variables and the command line still win over it):

- ``CONSUMER_SERVER`` -> ``kafka.bootstrap_servers``; ``CONSUMER_TOPICS`` (comma list, each name
  stripped) -> ``input.topics``; ``CONSUMER_GROUP_ID`` -> ``input.group_id``.
- ``PRODUCER_SERVER`` -> the producer's ``bootstrap.servers`` (``kafka.producer``) when it names
  other brokers than ``CONSUMER_SERVER``.
- ``PRODUCER_TOPIC_FORMAT``, ``PRODUCER_DATE_FORMAT``, ``PRODUCER_CHANGE_HOUR``,
  ``PRODUCER_RETENTION_DAYS`` -> ``output.topic_strategy`` daily with ``topic_format``,
  ``date_format``, ``change_hour``, ``retention_days``. ALeRCE has no dead-letter topic: ours is
  their format with ``_dlq`` appended (``lc_anomaly_%s`` -> ``lc_anomaly_%s_dlq``, e.g.
  ``lc_anomaly_20261205_dlq``): a legal name whenever theirs is (four characters longer), next
  to the scores topic of the same day, and never one of their step's topics.
  ``PRODUCER_TOPIC_STRATEGY_CLASS`` other than apf's ``DailyTopicStrategy`` is an error.
- Their step publishes its own record (``PRODUCER_SCHEMA_PATH``, ``output_ztf.avsc``):
  ``output.format`` alerce.
- ``SCRIBE_TOPIC`` -> ``output.scribe_topic``; ``METRICS_TOPIC`` -> ``output.metrics_topic``;
  ``METRICS_SOURCE``, ``METRICS_SURVEY`` (read by apf's step) -> ``output.metrics_source``,
  ``output.metrics_survey``.
- SASL as their file sets it, only when both the user name and the password are set: the
  consumer SASL_SSL with SCRAM-SHA-512; the producer ``PRODUCER_SECURITY_PROTOCOL`` (default
  SASL_PLAINTEXT) with ``PRODUCER_SASL_MECHANISM`` (default SCRAM-SHA-256). The same security on
  both sides -> ``kafka.security_protocol``, ``sasl_mechanism``, ``sasl_username``,
  ``sasl_password``; different -> each client's own in ``kafka.consumer`` / ``kafka.producer``.

Limitations (errors, one line): one producer writes scores, scribe commands and metrics, so
``SCRIBE_SERVER`` and ``METRICS_HOST`` must name the producer's brokers and ``SCRIBE_*`` /
``METRICS_*`` credentials must give the producer's security (theirs: SASL_SSL, SCRAM-SHA-512);
``CONFIG_FROM_YAML`` (their step then reads ``/config/config.yaml``) is not read.

Not used, named in the second list: ``CONSUME_MESSAGES`` and ``CONSUME_TIMEOUT`` (the size and
wait of apf's consume call, tuned for their loop of one consume, one model call, one database
write; our micro-batches are ``batch.max_rows`` and ``batch.max_delay_ms``, measured for our
engine - a 10 s wait would be 500 times our deadline), the classes, schema paths, model paths
and feature flags of their step. An empty variable counts as unset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from service.exceptions import SettingsError

DAILY_TOPIC_STRATEGY = "apf.core.topic_management.DailyTopicStrategy"
DEAD_LETTER_SUFFIX = "_dlq"

# read with os.environ[...] by their settings.py: their step does not start without them
REQUIRED = (
    "CONSUMER_TOPICS",
    "CONSUMER_SERVER",
    "CONSUMER_GROUP_ID",
    "PRODUCER_TOPIC_FORMAT",
    "PRODUCER_DATE_FORMAT",
    "PRODUCER_CHANGE_HOUR",
    "PRODUCER_RETENTION_DAYS",
    "PRODUCER_SERVER",
    "SCRIBE_SERVER",
    "SCRIBE_TOPIC",
    "METRICS_HOST",
    "METRICS_TOPIC",
)
OPTIONAL = (
    # settings.py
    "MODEL_CLASS",
    "CONSUMER_CLASS",
    "ENABLE_PARTITION_EOF",
    "CONSUME_TIMEOUT",
    "CONSUME_MESSAGES",
    "PRODUCER_TOPIC_STRATEGY_CLASS",
    "PRODUCER_CLASS",
    "PRODUCER_SCHEMA_PATH",
    "SCRIBE_SCHEMA_PATH",
    "METRICS_SCHEMA_PATH",
    "CONSUMER_KAFKA_USERNAME",
    "CONSUMER_KAFKA_PASSWORD",
    "PRODUCER_KAFKA_USERNAME",
    "PRODUCER_KAFKA_PASSWORD",
    "PRODUCER_SECURITY_PROTOCOL",
    "PRODUCER_SASL_MECHANISM",
    "SCRIBE_KAFKA_USERNAME",
    "SCRIBE_KAFKA_PASSWORD",
    "METRICS_KAFKA_USERNAME",
    "METRICS_KAFKA_PASSWORD",
    "MODEL_VERSION",
    "SCRIBE_PARSER_CLASS",
    "STEP_PARSER_CLASS",
    "USE_PROMETHEUS",
    "USE_PROFILING",
    "LOG_CLASS_DISTRIBUTION",
    "MIN_DETECTIONS",
    # models_settings.py (the model's files, by model class)
    "MODEL_PATH",
    "QUANTILES_PATH",
    "HEADER_QUANTILES_PATH",
    "FEATURE_QUANTILES_PATH",
    "METADATA_QUANTILES_PATH",
    "MAPPER_CLASS",
    # the image's entry script (scripts/run_step.py)
    "LOGGING_DEBUG",
    "CONFIG_FROM_YAML",
    # apf's step (libs/apf/apf/core/step.py)
    "METRICS_SOURCE",
    "METRICS_SURVEY",
)
ALERCE_VARIABLES = REQUIRED + OPTIONAL


class Security(NamedTuple):
    """How one of their Kafka clients connects (``mechanism``, ``username``, ``password``: None
    without SASL)."""

    protocol: str
    mechanism: str | None = None
    username: str | None = None
    password: str | None = None

    def properties(self) -> dict[str, str]:
        """As librdkafka properties (secrets included)."""
        names = ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password")
        return {name: value for name, value in zip(names, self, strict=True) if value is not None}


PLAINTEXT = Security("PLAINTEXT")


class _Reader:
    """Their variables, an empty one as unset, remembering which were used."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.used: set[str] = set()

    def get(self, name: str) -> str | None:
        value = self.environ.get(name)
        if not value:
            return None
        self.used.add(name)
        return value

    def integer(self, name: str) -> int:
        text = (self.get(name) or "").strip()
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{name}: expected an integer, got {text!r}") from None

    def sasl(self, client: str, protocol: str | None, mechanism: str | None) -> Security:
        """Their SASL of ``client`` (CONSUMER, PRODUCER...): set when both its user name and
        password are; ``protocol``/``mechanism`` None: the producer's variables and defaults."""
        user, password = f"{client}_KAFKA_USERNAME", f"{client}_KAFKA_PASSWORD"
        if not (self.environ.get(user) and self.environ.get(password)):
            return PLAINTEXT
        if protocol is None:
            protocol = (self.get("PRODUCER_SECURITY_PROTOCOL") or "SASL_PLAINTEXT").strip().upper()
        if mechanism is None:
            mechanism = (self.get("PRODUCER_SASL_MECHANISM") or "SCRAM-SHA-256").strip()
        return Security(protocol, mechanism, self.get(user), self.get(password))


def _servers(text: str) -> frozenset[str]:
    return frozenset(item.strip() for item in text.split(",") if item.strip())


def _difference(theirs: Security, producer: Security) -> str:
    """What differs between two securities, never a secret's value."""
    parts = []
    if theirs.protocol != producer.protocol:
        parts.append(f"protocol {theirs.protocol} vs {producer.protocol}")
    if theirs.mechanism != producer.mechanism:
        parts.append(f"mechanism {theirs.mechanism or '-'} vs {producer.mechanism or '-'}")
    if theirs.username != producer.username:
        parts.append("user name")
    if theirs.password != producer.password:
        parts.append("password")
    return ", ".join(parts)


def alerce_settings(environ: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Our settings (nested, as overrides) from ALeRCE's variables in ``environ``, and the names
    of those of their variables that are set and that we do not use (see the module's
    docstring); a :class:`SettingsError` (one line, never a secret's value) for what we cannot
    honour or what their step would not start without."""
    read = _Reader(environ)
    if read.get("CONFIG_FROM_YAML"):
        raise SettingsError(
            "CONFIG_FROM_YAML is set: their step then reads /config/config.yaml, which the "
            "alerce profile does not read; give its values as their environment variables"
        )
    missing = [name for name in REQUIRED if not environ.get(name, "").strip()]
    if missing:
        raise SettingsError(
            f"profile alerce: missing environment variable{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (their step does not start without them)"
        )
    strategy = (read.get("PRODUCER_TOPIC_STRATEGY_CLASS") or DAILY_TOPIC_STRATEGY).strip()
    if strategy != DAILY_TOPIC_STRATEGY:
        raise SettingsError(
            f"PRODUCER_TOPIC_STRATEGY_CLASS {strategy}: the alerce profile implements "
            f"{DAILY_TOPIC_STRATEGY} only (output.topic_strategy daily)"
        )

    def value(name: str) -> str:
        return (read.get(name) or "").strip()

    topics = [topic.strip() for topic in value("CONSUMER_TOPICS").split(",") if topic.strip()]
    if not topics:
        raise SettingsError("CONSUMER_TOPICS: expected a comma-separated list of topics")
    consumer_servers, producer_servers = value("CONSUMER_SERVER"), value("PRODUCER_SERVER")
    for server, what in (("SCRIBE_SERVER", "scribe commands"), ("METRICS_HOST", "metrics")):
        if _servers(value(server)) != _servers(producer_servers):
            raise SettingsError(
                f"{server} names other brokers than PRODUCER_SERVER: this service writes "
                f"{what} through its one producer (give both the same brokers)"
            )
    topic_format = value("PRODUCER_TOPIC_FORMAT")
    output: dict[str, Any] = {
        "topic_strategy": "daily",
        "format": "alerce",  # their step's record on their topics (PRODUCER_SCHEMA_PATH's)
        "topic_format": topic_format,
        "dead_letter_topic_format": topic_format + DEAD_LETTER_SUFFIX,
        "date_format": read.get("PRODUCER_DATE_FORMAT"),
        "change_hour": read.integer("PRODUCER_CHANGE_HOUR"),
        "retention_days": read.integer("PRODUCER_RETENTION_DAYS"),
        "scribe_topic": value("SCRIBE_TOPIC"),
        "metrics_topic": value("METRICS_TOPIC"),
    }
    for name in ("METRICS_SOURCE", "METRICS_SURVEY"):  # -> output.metrics_source, _survey
        if read.get(name):
            output[name.lower()] = value(name)

    kafka: dict[str, Any] = {"bootstrap_servers": consumer_servers}
    producer_properties: dict[str, str] = {}
    if _servers(producer_servers) != _servers(consumer_servers):
        producer_properties["bootstrap.servers"] = producer_servers
    consumer = read.sasl("CONSUMER", "SASL_SSL", "SCRAM-SHA-512")
    producer = read.sasl("PRODUCER", None, None)
    for client, what in (("SCRIBE", "scribe commands"), ("METRICS", "metrics")):
        theirs = read.sasl(client, "SASL_SSL", "SCRAM-SHA-512")
        if theirs != producer:
            raise SettingsError(
                f"{client}_KAFKA_USERNAME/PASSWORD give another security than the producer's "
                f"({_difference(theirs, producer)}): this service writes {what} through its one "
                "producer (give the producer theirs: PRODUCER_KAFKA_*, PRODUCER_SECURITY_PROTOCOL, "
                "PRODUCER_SASL_MECHANISM)"
            )
    if consumer == producer:
        if consumer != PLAINTEXT:
            kafka |= {
                "security_protocol": consumer.protocol,
                "sasl_mechanism": consumer.mechanism,
                "sasl_username": consumer.username,
                "sasl_password": consumer.password,
            }
    else:
        kafka["consumer"] = consumer.properties()
        producer_properties |= producer.properties()
    if producer_properties:
        kafka["producer"] = producer_properties

    overrides = {
        "kafka": kafka,
        "input": {"topics": topics, "group_id": value("CONSUMER_GROUP_ID")},
        "output": output,
    }
    unused = [name for name in ALERCE_VARIABLES if name in environ and name not in read.used]
    return overrides, unused
