"""Dead letters in one place: every reason the code can produce is a DeadLetterReason and is
documented; validation (service.core.validation) alone makes reasons and messages, the envelope
(service.io.sinks.envelope) alone builds headers, references and rows - byte for byte as before."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from service import __version__
from service.core import validation
from service.core.validation import RULES, check_values, listed, reject
from service.exceptions import DeadLetterReason, InputError
from service.io.sinks import envelope
from service.io.sinks.files import DEAD_LETTER_COLUMNS
from service.io.sinks.kafka import OUTPUT_REASONS
from service.records import Input, Lineage

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "service"


def test_every_reason_the_code_can_produce_is_one_of_the_list_and_documented() -> None:
    produced = {rule.reason for rule in RULES.values()} | set(OUTPUT_REASONS)
    assert produced == set(get_args(DeadLetterReason))
    table = validation.__doc__ or ""
    for finding, rule in RULES.items():
        [line] = [line for line in table.splitlines() if line.startswith(f"``{finding}``")]
        assert line.split()[1] == rule.reason, finding
    for reason in OUTPUT_REASONS:
        assert f"``{reason}``" in table
    metrics_doc = (ROOT / "docs" / "observability.md").read_text()
    [row] = [
        line for line in metrics_doc.splitlines() if "alert_anomaly_dead_letters_total" in line
    ]
    for reason in produced:
        assert f"`{reason}`" in row, reason


def sources() -> dict[str, str]:
    return {
        str(p.relative_to(ROOT)): p.read_text()
        for p in SERVICE.rglob("*.py")
        if "__pycache__" not in p.parts
    }


def test_only_validation_makes_input_errors_and_only_the_envelope_builds_headers() -> None:
    found = sorted(
        (path, match)
        for path, text in sources().items()
        # a header built: ("alert_anomaly.<name>", ...) - reading one (.get(...)) is fine
        for match in re.findall(r'InputError\(|HEADER_PREFIX|(?<!get)\(f?"alert_anomaly\.', text)
        if not (path == "service/exceptions.py" and match == "InputError(")
    )
    assert {path for path, _ in found} == {
        "service/core/validation.py",
        "service/io/sinks/envelope.py",
    }
    assert {match for path, match in found if path.endswith("validation.py")} == {"InputError("}
    # every finding the code reports has a rule
    reported = {
        finding
        for text in sources().values()
        for finding in re.findall(r'reject\(\s*"(\w+)"', text)
    }
    assert reported == set(RULES)


@pytest.mark.parametrize(
    ("finding", "details", "reason", "message"),
    [
        ("empty_value", {}, "undecodable", "empty message value"),
        (
            "trailing_bytes",
            {"left": 8},
            "undecodable",
            "8 bytes left after the record: wrong schema?",
        ),
        ("no_record", {"format": "json"}, "undecodable", "no record in the json message"),
        ("unknown_schema_id", {"schema_id": 7}, "unknown_schema", "schema id 7 is not configured"),
        ("not_a_record", {"type": "list"}, "invalid_record", "expected a record, got list"),
        (
            "no_object_id",
            {"fields": "'oid' or 'aid'"},
            "invalid_record",
            "record has no usable 'oid' or 'aid'",
        ),
        (
            "object_id_not_an_integer",
            {"value": "x"},
            "invalid_record",
            "diaObject.diaObjectId is 'x', not an integer",
        ),
        (
            "probability_not_finite",
            {"name": "Periodic", "value": float("nan")},
            "missing_probabilities",
            "probability of 'Periodic' is nan",
        ),
        (
            "no_unrouted_model",
            {"unrouted": "All", "models": "Periodic, Transient"},
            "missing_probabilities",
            "the alert has no classifier probabilities and no unrouted model (All) is configured "
            "(models: Periodic, Transient)",
        ),
        (
            "class_without_model",
            {"name": "Stochastic", "models": "Periodic"},
            "unknown_class",
            "most probable top-level class 'Stochastic' has no model (models: Periodic)",
        ),
        (
            "few_features",
            {
                "carried": 3,
                "n": 10,
                "model": "ztf-periodic",
                "coverage": 0.3,
                "minimum": 0.9,
                "absent": listed(tuple("abcdefg")),
            },
            "low_feature_coverage",
            "the record carries 3 of the 10 features of model ztf-periodic (30% < 90%); absent: "
            "a, b, c, d, e and 2 more",
        ),
        (
            "few_values",
            {"valued": 1, "n": 8, "model": "lsst-all", "share": 1 / 8, "minimum": 0.2},
            "null_features",
            "1 of the 8 features of model lsst-all have a value, the others are null "
            "(12% < model.min_feature_values 20%)",
        ),
        ("infinite_feature", {"name": "amp", "value": float("inf")}, "non_finite_feature", ""),
    ],
)
def test_findings_become_the_reasons_and_messages_of_before(
    finding: validation.Finding, details: dict[str, Any], reason: str, message: str
) -> None:
    error = reject(finding, **details)
    assert isinstance(error, InputError)
    assert error.reason == reason
    assert str(error) == (message or "feature 'amp' is inf")


def test_a_decode_failure_keeps_300_characters_and_values_are_checked_in_order() -> None:
    error = reject("bad_bytes", format="json", error=ValueError("x" * 400))
    assert str(error) == f"cannot decode as json: {ValueError('x' * 400)!r}"[:300]
    huge = 2**1001
    assert str(check_values({"a": "1", "b": huge}, {})) == "feature 'a' is not a number: '1'"
    beyond = check_values({"a": None, "b": huge}, {"Periodic": "x"})
    assert beyond is not None
    assert (beyond.reason, str(beyond)) == ("non_finite_feature", f"feature 'b' is {huge}")
    missing = check_values({"a": 1, "b": 2.0, "c": True}, {"Periodic": None})
    assert missing is not None
    assert (missing.reason, str(missing)) == (
        "missing_probabilities",
        "probability of 'Periodic' is None",
    )
    assert check_values({"a": 2**1000, "b": None}, {"Periodic": 0.5}) is None


def test_the_envelope_of_a_dead_letter_and_its_row() -> None:
    source = Lineage("alerts", 3, 17, 1234)
    item = Input(source, b"key", b"value", [("trace", b"abc")])
    long = InputError("undecodable", "y" * 1500)
    key, value, headers = envelope.dead_letter(item, long)
    assert (key, value) == (b"key", b"value")
    assert headers == [
        ("alert_anomaly.error", b"undecodable"),
        ("alert_anomaly.error_message", b"y" * 1000 + b"... (1500 characters)"),
        ("alert_anomaly.source_topic", b"alerts"),
        ("alert_anomaly.source_partition", b"3"),
        ("alert_anomaly.source_offset", b"17"),
        ("alert_anomaly.source_timestamp", b"1234"),
        ("alert_anomaly.service_version", __version__.encode()),
        ("trace", b"abc"),
    ]
    tombstone = envelope.dead_letter(item._replace(value=None, headers=None), long)
    assert tombstone.value is None
    assert tombstone.headers == headers[:-1]
    row = envelope.dead_letter_row(item, InputError("unknown_class", "no model"))
    assert row == {
        "source_topic": "alerts",
        "source_partition": 3,
        "source_offset": 17,
        "reason": "unknown_class",
        "error": "no model",
        "value": b"value",
    }
    assert list(row) == DEAD_LETTER_COLUMNS.names


def test_the_reference_that_stands_for_a_refused_output() -> None:
    source = Lineage("alerts", 3, 17, None)
    key, value, headers = envelope.reference(
        source,
        "oversized",
        "Broker: Message size too large",
        what="undecodable",
        topic="dlq",
        key=b"k",
        value=b"v",
        input_headers=[("trace", b"abc")],
    )
    assert key == b"k"
    assert json.loads(value or b"") == {
        "alert_anomaly": "undecodable output not written: oversized",
        "source_topic": "alerts",
        "source_partition": 3,
        "source_offset": 17,
        "original_size": 1,
    }
    assert headers == [
        ("alert_anomaly.error", b"oversized"),
        (
            "alert_anomaly.error_message",
            b"the undecodable output could not be written: Broker: Message size too large",
        ),
        ("alert_anomaly.source_topic", b"alerts"),
        ("alert_anomaly.source_partition", b"3"),
        ("alert_anomaly.source_offset", b"17"),
        ("alert_anomaly.source_timestamp", b""),
        ("alert_anomaly.service_version", __version__.encode()),
        ("alert_anomaly.original_output", b"dead_letter"),
        ("alert_anomaly.original_error", b"undecodable"),
        ("alert_anomaly.original_topic", b"dlq"),
        ("alert_anomaly.original_size", b"1"),
        ("alert_anomaly.original_sha256", hashlib.sha256(b"v").hexdigest().encode()),
        ("trace", b"abc"),
    ]
    score = envelope.reference(
        source, "rejected", "e", what="score", topic="s", key=None, value=None, input_headers=None
    )
    assert score.key is None
    assert dict(score.headers)["alert_anomaly.original_output"] == b"score"
    assert dict(score.headers)["alert_anomaly.original_size"] == b"0"
