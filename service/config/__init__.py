"""Settings of the streaming service (pydantic-settings).

Sources, highest precedence first: command-line overrides, environment variables
(``ALERT_ANOMALY_<SECTION>__<KEY>``, e.g. ``ALERT_ANOMALY_KAFKA__BOOTSTRAP_SERVERS``; lists and maps
as JSON), an optional TOML or YAML file (``--config``), the defaults of the sections. Unknown keys
are rejected in every source; everything is validated at start-up and reported as one line.

The sections are :mod:`~service.config.kafka`, :mod:`~service.config.streams` (input, output)
and :mod:`~service.config.sections` (model, batch, and :class:`Settings`); loading and its errors
are :mod:`~service.config.loading`, the settings in effect and the README's reference
:mod:`~service.config.effect`. This package's names are their public API.
"""

from service.config.base import (
    ENV_PREFIX,
    SECRET_MASK,
    ClientConfig,
    InputFormat,
    OutputFormat,
    is_secret_property,
    masked_properties,
    parse_time_ms,
)
from service.config.effect import (
    SettingInEffect,
    json_default,
    reference_markdown,
    settings_in_effect,
)
from service.config.kafka import KafkaSettings
from service.config.loading import (
    check_environment,
    environment_names,
    is_service_link,
    load_settings,
)
from service.config.sections import BatchSettings, ModelSettings, Settings
from service.config.streams import InputSettings, OutputSettings

__all__ = [
    "ENV_PREFIX",
    "SECRET_MASK",
    "BatchSettings",
    "ClientConfig",
    "InputFormat",
    "InputSettings",
    "KafkaSettings",
    "ModelSettings",
    "OutputFormat",
    "OutputSettings",
    "SettingInEffect",
    "Settings",
    "check_environment",
    "environment_names",
    "is_secret_property",
    "is_service_link",
    "json_default",
    "load_settings",
    "masked_properties",
    "parse_time_ms",
    "reference_markdown",
    "settings_in_effect",
]
