"""Errors of the streaming service. All derive from :class:`models.exceptions.AlertAnomalyError`
(the project's single hierarchy), so the CLI reports them as one line."""

from __future__ import annotations

from typing import Literal

from models.exceptions import AlertAnomalyError, ConfigurationError

# Why a message went to the dead-letter topic: the value of its ``alert_anomaly.error`` header
# and of the ``reason`` label of the dead-letter metric. The one list of reasons: the input side
# is decided by service.core.validation, the output side by service.io.sinks.kafka (a test checks
# that the code produces exactly these).
DeadLetterReason = Literal[
    "undecodable",  # bytes that the configured format and schema cannot decode
    "unknown_schema",  # Confluent wire format with a schema id missing from the schema map
    "invalid_record",  # decoded, but not a classifier record (missing id, wrong types)
    "no_object",  # a Rubin alert without a diaObject (a solar-system source): nothing to score
    "missing_probabilities",  # no top-level class probabilities
    "unknown_class",  # the most probable top-level class has no model
    "low_feature_coverage",  # the record lacks too many of the model's features (by name)
    "non_finite_feature",  # +/-inf among the features (NaN/null means undefined and is fine)
    "null_features",  # too few of the model's features have a value (mostly null: an empty record)
    # what the sink writes instead of an output the broker refuses for good (a reference to it)
    "oversized",  # too large for the producer or the topic
    "rejected",  # a record or policy the broker rejects
]


class InputError(AlertAnomalyError):
    """A message that cannot be scored; it goes to the dead-letter topic with ``reason``."""

    def __init__(self, reason: DeadLetterReason, message: str) -> None:
        super().__init__(message)
        self.reason: DeadLetterReason = reason


class SettingsError(ConfigurationError):
    """The service's settings are invalid (unknown key, bad value, missing topic...)."""


class InferenceError(AlertAnomalyError):
    """The inference worker failed or is gone; the service stops (uncommitted work is redone)."""


class KafkaServiceError(AlertAnomalyError):
    """A Kafka operation failed for good; carries the topic, partition and offset involved."""

    def __init__(
        self,
        message: str,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        where = ", ".join(
            f"{k}={v}"
            for k, v in (("topic", topic), ("partition", partition), ("offset", offset))
            if v is not None
        )
        super().__init__(f"{message} ({where})" if where else message)
        self.topic, self.partition, self.offset = topic, partition, offset


class BrokersUnavailableError(KafkaServiceError):
    """No Kafka broker answered for ``kafka.unavailable_timeout_s``: the command gives up."""

    exit_code = 3


class ClusterError(AlertAnomalyError):
    """The Dask scheduler did not answer, or a partition failed on a worker (``batch``: the
    partitions done are kept; a rerun does the rest)."""


class StoreError(AlertAnomalyError):
    """The verdict store cannot be opened, migrated, read or written (a database that does not
    answer, refuses the credentials, or holds a newer schema than this version knows)."""
