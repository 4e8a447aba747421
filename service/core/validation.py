"""Why an input is a dead letter: the one place that turns what is found wrong with an input
into a reason and a message.

Decoders (:mod:`service.io.codecs.avro`, :mod:`service.io.codecs.decoding`), the survey parsers
(:mod:`service.io.codecs.surveys`) and the router (:mod:`service.core.routing`) only report a
finding with its details (:func:`reject`); this table (:data:`RULES`) decides the reason - the
``alert_anomaly.error`` header of the dead letter and the ``reason`` label of
``alert_anomaly_dead_letters_total``, one of :data:`service.exceptions.DeadLetterReason` - and
the message (``alert_anomaly.error_message``):

==============================  =====================  =========================================
finding                         reason                 what was found (by whom)
==============================  =====================  =========================================
``empty_value``                 undecodable            no message value (decoder)
``bad_bytes``                   undecodable            bytes the format cannot decode (decoder)
``trailing_bytes``              undecodable            bytes left after the record (decoder)
``not_confluent``               undecodable            no Confluent magic byte and id (decoder)
``no_record``                   undecodable            a message without a record (decoder)
``empty_input``                 undecodable            a table row or file without records
``unknown_schema_id``           unknown_schema         a Confluent schema id not configured
``not_a_record``                invalid_record         a value that is not a record (parser)
``no_object_id``                invalid_record         no usable object id (parser)
``features_not_a_map``          invalid_record         ``features`` not a map or record (parser)
``object_id_not_an_integer``    invalid_record         a Rubin diaObjectId not a long (parser)
``feature_not_a_number``        invalid_record         a feature that is not a number (decoder)
``no_object``                   no_object              a Rubin packet without diaObject (parser)
``no_probabilities``            missing_probabilities  no top-level probabilities (parser)
``probability_not_a_number``    missing_probabilities  a probability not a number (decoder)
``probability_not_finite``      missing_probabilities  a probability NaN or infinite (router)
``no_unrouted_model``           missing_probabilities  no probabilities, no ``All`` model (router)
``class_without_model``         unknown_class          the most probable class has no model
``few_features``                low_feature_coverage   fewer than ``model.min_feature_coverage``
                                                       of the model's features by name (router)
``infinite_feature``            non_finite_feature     a feature beyond float32 (decoder for an
                                                       integer beyond any float, router)
``few_values``                  null_features          fewer than ``model.min_feature_values``
                                                       of the model's features valued (router)
==============================  =====================  =========================================

Outputs the broker refuses for good are dead letters too, with the reasons ``oversized`` and
``rejected``, decided by the Kafka sink from the producer's error
(:data:`service.io.sinks.kafka.OUTPUT_REASONS`). Undefined (null, NaN) features are normal and
are scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from service.exceptions import DeadLetterReason, InputError

Finding = Literal[
    "empty_value",
    "bad_bytes",
    "trailing_bytes",
    "not_confluent",
    "no_record",
    "empty_input",
    "unknown_schema_id",
    "not_a_record",
    "no_object_id",
    "features_not_a_map",
    "object_id_not_an_integer",
    "feature_not_a_number",
    "no_object",
    "no_probabilities",
    "probability_not_a_number",
    "probability_not_finite",
    "no_unrouted_model",
    "class_without_model",
    "few_features",
    "infinite_feature",
    "few_values",
]

_LARGEST_INT = 2**1000  # an integer feature beyond it is beyond any float (JSON has them)
_NUMBERS = frozenset((int, float, bool))
LISTED = 5  # names listed in a message, then "and N more"


class Rule(NamedTuple):
    """The reason of a finding and its message (``str.format`` of the finding's details)."""

    reason: DeadLetterReason
    message: str
    limit: int | None = None  # characters of the message kept


RULES: dict[Finding, Rule] = {
    "empty_value": Rule("undecodable", "empty message value"),
    "bad_bytes": Rule("undecodable", "cannot decode as {format}: {error!r}", limit=300),
    "trailing_bytes": Rule("undecodable", "{left} bytes left after the record: wrong schema?"),
    "not_confluent": Rule("undecodable", "not in Confluent wire format (magic byte 0 + id)"),
    "no_record": Rule("undecodable", "no record in the {format} message"),
    "empty_input": Rule("undecodable", "no record in the input"),
    "unknown_schema_id": Rule("unknown_schema", "schema id {schema_id} is not configured"),
    "not_a_record": Rule("invalid_record", "expected a record, got {type}"),
    "no_object_id": Rule("invalid_record", "record has no usable {fields}"),
    "features_not_a_map": Rule("invalid_record", "'features' is not a map or record"),
    "object_id_not_an_integer": Rule(
        "invalid_record", "diaObject.diaObjectId is {value!r}, not an integer"
    ),
    "feature_not_a_number": Rule("invalid_record", "feature {name!r} is not a number: {value!r}"),
    "no_object": Rule(
        "no_object", "the alert has no diaObject (a solar-system source?): nothing to score"
    ),
    "no_probabilities": Rule(
        "missing_probabilities", "record has no lc_classification.hierarchical.top"
    ),
    "probability_not_a_number": Rule(
        "missing_probabilities", "probability of {name!r} is {value!r}"
    ),
    "probability_not_finite": Rule("missing_probabilities", "probability of {name!r} is {value}"),
    "no_unrouted_model": Rule(
        "missing_probabilities",
        "the alert has no classifier probabilities and no unrouted model ({unrouted}) is "
        "configured (models: {models})",
    ),
    "class_without_model": Rule(
        "unknown_class", "most probable top-level class {name!r} has no model (models: {models})"
    ),
    "few_features": Rule(
        "low_feature_coverage",
        "the record carries {carried} of the {n} features of model {model} ({coverage:.0%} < "
        "{minimum:.0%}); absent: {absent}",
    ),
    "infinite_feature": Rule("non_finite_feature", "feature {name!r} is {value}"),
    "few_values": Rule(
        "null_features",
        "{valued} of the {n} features of model {model} have a value, the others are null "
        "({share:.0%} < model.min_feature_values {minimum:.0%})",
    ),
}


def reject(finding: Finding, **details: Any) -> InputError:
    """The dead-letter error of ``finding`` (its reason and message, by :data:`RULES`)."""
    rule = RULES[finding]
    message = rule.message.format(**details)
    return InputError(rule.reason, message[: rule.limit] if rule.limit else message)


def listed(names: tuple[str, ...] | list[str]) -> str:
    """The first :data:`LISTED` names, comma-separated, then how many more there are."""
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    return f"{', '.join(names[:LISTED])}{more}"


def check_values(features: Mapping[str, Any], top: Mapping[str, Any]) -> InputError | None:
    """The first feature or top-level probability of a parsed record that cannot be a float
    column: not a number, or an integer beyond any float; None when all can."""
    for name, value in features.items():
        if value is not None and type(value) not in _NUMBERS:
            return reject("feature_not_a_number", name=name, value=value)
        if type(value) is int and abs(value) > _LARGEST_INT:
            return reject("infinite_feature", name=name, value=value)
    for name, value in top.items():
        if type(value) not in _NUMBERS:
            return reject("probability_not_a_number", name=name, value=value)
    return None
