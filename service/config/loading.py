"""Loading the settings: the file named by ``--config``, the environment (``ALERT_ANOMALY_*``; the
service links Kubernetes injects are tolerated) and one line for every error."""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_origin

import structlog
import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource
from pydantic_settings import SettingsError as SourceError

from service.config.alerce import alerce_settings
from service.config.base import ENV_DOC, ENV_PREFIX, SECRET_MASK, Section, is_secret_property
from service.config.sections import Settings
from service.exceptions import SettingsError
from service.ops import redaction


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
            if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
                add(info.annotation, here)

    add(Settings, ())
    return names


def setting_field(path: tuple[str, ...]) -> Any:
    model: Any = Settings
    info = None
    for name in path:
        info = model.model_fields[name]
        model = info.annotation
    return info


# Kubernetes gives every pod the addresses of the Services of its namespace (unless the pod
# sets enableServiceLinks: false); a Service named alert-anomaly[-x] gives ALERT_ANOMALY_[X_]...
_LINK_URL = re.compile(r"(tcp|udp|sctp)://(\[[0-9a-fA-F:.]+\]|[0-9.]+):([0-9]+)")
_SERVICE_LINKS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(r"(?:[A-Z0-9_]+_)?" + suffix), shape)
    for suffix, shape in (
        (r"SERVICE_HOST", "ip"),  # 10.0.0.11
        (r"SERVICE_PORT(?:_[A-Z0-9_]+)?", "port"),  # 9108 (and per named port)
        (r"PORT", "url"),  # tcp://10.0.0.11:9108
        (r"PORT_(?P<port>[0-9]+)_(?P<proto>TCP|UDP|SCTP)", "url"),
        (r"PORT_[0-9]+_(?P<proto>TCP|UDP|SCTP)_PROTO", "proto"),  # tcp
        (r"PORT_(?P<port>[0-9]+)_(?:TCP|UDP|SCTP)_PORT", "port"),  # 9108
        (r"PORT_[0-9]+_(?:TCP|UDP|SCTP)_ADDR", "ip"),  # 10.0.0.11
    )
)


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


def _link_value(match: re.Match[str], shape: str, value: str) -> bool:
    fixed = match.groupdict()
    if shape == "ip":
        return _ip(value)
    if shape == "port":
        return value.isdigit() and fixed.get("port") in (None, value)
    if shape == "proto":
        return value == fixed["proto"].lower()
    url = _LINK_URL.fullmatch(value)
    return (
        url is not None
        and _ip(url[2])
        and fixed.get("port") in (None, url[3])
        and (fixed.get("proto") or url[1]).lower() == url[1]
    )


def is_service_link(name: str, value: str) -> bool:
    """Whether ``name=value`` is a variable Kubernetes injects for a Service named
    ``alert-anomaly[-*]``: ``{SVC}_SERVICE_HOST``, ``{SVC}_SERVICE_PORT[_{PORTNAME}]``,
    ``{SVC}_PORT`` and ``{SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]``, by name and by the
    shape of the value (an IP address, a port number, ``tcp://<ip>:<port>``, ``tcp``)."""
    if not name.startswith(ENV_PREFIX):
        return False
    rest = name.removeprefix(ENV_PREFIX)
    for pattern, shape in _SERVICE_LINKS:
        match = pattern.fullmatch(rest)
        if match is not None and _link_value(match, shape, value):
            return True
    return False


_JSON_KINDS = {str: "string", int: "number", float: "number", bool: "boolean", list: "list"}
_JSON_KINDS |= {dict: "object", type(None): "null"}


def check_environment(environ: Mapping[str, str] | None = None) -> None:
    """Unknown ``ALERT_ANOMALY_*`` variables (with the closest valid name) and list or map
    values that are not JSON, each as one line naming the variable, never its value (it may be
    a secret); Kubernetes' service-link variables (:func:`is_service_link`) are not settings and
    pass (default: os.environ)."""
    environ = os.environ if environ is None else environ
    known = environment_names()
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = known.get(key)
        if path is None:
            if is_service_link(key, value):
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else f" (known: see {ENV_DOC})"
            raise SettingsError(f"unknown environment variable {key}{hint}")
        annotation = setting_field(path).annotation
        origin = get_origin(annotation)
        structured = origin in (list, dict) or (
            isinstance(annotation, type) and issubclass(annotation, Section)
        )
        if not structured:
            continue
        expected = list if origin is list else dict
        kind = "list" if expected is list else "object"
        example = '["a", "b"]' if expected is list else '{"key": "value"}'
        try:
            loaded = json.loads(value)
        except json.JSONDecodeError as exc:  # position only: the value may hold a secret
            got = f"invalid JSON: {exc.msg} (character {exc.pos})"
        else:
            got = f"a JSON {_JSON_KINDS.get(type(loaded), 'value')}"
            if isinstance(loaded, expected):
                continue
        raise SettingsError(
            f"{key}: expected a JSON {kind}, e.g. {key}='{example}'; got {got} (value not shown)"
        )


def _secrets_in(value: Any, secret: bool) -> set[str]:
    """The strings of an input that are secrets (``secret``: the input is a secret's value)."""
    if isinstance(value, SecretStr):
        return {value.get_secret_value()}
    if isinstance(value, Mapping):
        found: set[str] = set()
        for key, item in value.items():
            found |= _secrets_in(item, secret or is_secret_property(str(key)))
        return found
    if secret and isinstance(value, str | int | float) and str(value):
        return {str(value)}
    return set()


def _one_line(exc: ValidationError) -> str:
    """The first error of a validation as one line, the values of secrets in it masked."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    secret = any(is_secret_property(str(p)) for p in first["loc"])
    for value in sorted(_secrets_in(first.get("input"), secret), key=len, reverse=True):
        message = message.replace(value, SECRET_MASK)
    return f"invalid setting {where}: {message}{more}" if where else f"invalid settings: {message}"


def _file_error(path: Path | None, exc: Exception) -> str:
    """A config file's syntax error as one line: the problem and where, never the text."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"config file {path} is not valid YAML: {exc.problem or exc.context}{at}"
    return f"config file {path} is not valid: {str(exc).splitlines()[0]}"


PROFILE_VARIABLE = ENV_PREFIX + "PROFILE"


def _with_profile(cls: type[Settings], values: dict[str, Any]) -> type[Settings]:
    """Settings with a profile's values as a source below the environment, above the file."""

    def sources(
        profiled: type[Settings],
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init, env, *files = cls.settings_customise_sources(
            settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
        )
        return (init, env, InitSettingsSource(settings_cls, values), *files)

    return type("Settings", (cls,), {"settings_customise_sources": classmethod(sources)})


def load_settings(
    config_file: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from overrides > environment > profile (``ALERT_ANOMALY_PROFILE``: alerce reads
    ALeRCE's variables, :mod:`service.config.alerce`) > config file > defaults, or a
    SettingsError."""
    check_environment()
    cls = _with_file(config_file) if config_file is not None else Settings
    chosen = dict(overrides or {}).get("profile")
    if chosen is None:  # pydantic-settings reads names case-insensitively
        chosen = next((v for k, v in os.environ.items() if k.upper() == PROFILE_VARIABLE), None)
    unused: list[str] = []
    if chosen == "alerce":
        values, unused = alerce_settings(os.environ)
        cls = _with_profile(cls, values)
    try:
        settings = cls(**dict(overrides or {}))
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise SettingsError(_file_error(config_file, exc)) from None
    except SourceError as exc:
        raise SettingsError(str(exc).splitlines()[0]) from None
    redaction.register(settings.kafka.secret_values())  # masked in every log line from now on
    if settings.profile != (chosen or "default"):
        raise SettingsError(
            f"profile {settings.profile} in config file {config_file}: choose a profile with "
            f"{PROFILE_VARIABLE} (its values sit below the environment, above the file)"
        )
    if settings.profile != "default":
        structlog.get_logger(__name__).info(
            "settings_profile", profile=settings.profile, unused=unused
        )
    return settings
