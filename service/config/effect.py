"""The settings in effect, each with where its value came from (``alert-anomaly settings``), and
the configuration reference of the README."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from service.config.alerce import alerce_settings
from service.config.base import ENV_PREFIX, Section, masked_properties
from service.config.loading import setting_field
from service.config.sections import Settings


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
    info = setting_field(path)
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
    profile_data = alerce_settings(environ)[0] if settings.profile == "alerce" else {}
    values = settings.model_dump(mode="json")  # SecretStr -> "**********"
    rows: list[SettingInEffect] = []

    def add(model: type[BaseModel], path: tuple[str, ...]) -> None:
        for name, info in model.model_fields.items():
            here = (*path, name)
            if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
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
            if _dig(profile_data, here)[0]:
                sources.append(f"profile {settings.profile}")
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
            if isinstance(annotation, type) and issubclass(annotation, Section):
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
