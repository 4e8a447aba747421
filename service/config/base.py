"""What every settings section shares: the environment prefix, the wire formats' names, secrets
by property name and times as epoch milliseconds."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from models.exceptions import DataError

ENV_PREFIX = "ALERT_ANOMALY_"
InputFormat = Literal["schemaless", "container", "confluent", "json"]
OutputFormat = Literal["schemaless", "confluent", "json", "alerce"]
ClientConfig = dict[str, str | int | float | bool]  # librdkafka properties

ENV_DOC = "the README's configuration reference"

SECRET_MASK = "**********"
# librdkafka properties whose values are secrets (sasl.password, ssl.key.password,
# sasl.oauthbearer.client.secret, ssl.keystore.password...): their names contain one of these
SECRET_NAME_PARTS = ("password", "secret", "token", "key")


def parse_time_ms(text: str) -> int:
    """ISO-8601 (UTC if no zone) or epoch milliseconds -> epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise DataError(f"cannot read {text!r} as a time (ISO-8601 or epoch ms)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


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


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
