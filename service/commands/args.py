"""Argument types shared by commands: they fail with argparse's one-line usage errors."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from service.config import Settings, load_settings


def examples(*lines: str) -> str:
    """The epilog of a command's --help: examples, one per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_configuration_arg(parser: argparse.ArgumentParser) -> None:
    """--configuration: the method that trains the models (models.configurations). Not
    abbreviated: ``--config`` is a settings file in every command that takes one."""
    from models.configurations import CONFIGURATION_NAMES, DEFAULT_CONFIGURATION

    parser.allow_abbrev = False
    parser.add_argument(
        "--configuration",
        choices=CONFIGURATION_NAMES,
        default=DEFAULT_CONFIGURATION,
        help="paper: the reference code's method; ours: this project's choices "
        f"(default {DEFAULT_CONFIGURATION})",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def comma_list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list, got nothing")
    return items


def default_jobs() -> int:
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class SettingFlag:
    """A command-line option that sets a setting (``path`` in the settings' nesting)."""

    path: tuple[str, ...]
    help: str
    type: Callable[[str], Any] | None = None
    repeat: bool = False

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The values the setting's type allows when it is a ``Literal`` (None: any)."""
        return setting_choices(self.path)


def setting_choices(path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The values of the setting at ``path`` when its type is a ``Literal`` (or an optional
    one), read from :class:`Settings`: the one list of them; None for other types."""
    model: type[BaseModel] = Settings
    annotation: Any = None
    for key in path:
        annotation = model.model_fields[key].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    if get_origin(annotation) in (Union, UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        annotation = options[0] if len(options) == 1 else None
    if get_origin(annotation) is Literal:
        return tuple(str(value) for value in get_args(annotation))
    return None


# The one table of options that set settings; a command picks the ones it takes.
SETTING_FLAGS: dict[str, SettingFlag] = {
    "--bootstrap-servers": SettingFlag(
        ("kafka", "bootstrap_servers"), "Kafka brokers, host:port[,host:port...]"
    ),
    "--topic": SettingFlag(
        ("input", "topics"), "input topic, or a regular expression starting with ^", repeat=True
    ),
    "--group-id": SettingFlag(("input", "group_id"), "consumer group"),
    "--input-format": SettingFlag(("input", "format"), "input format"),
    "--schema-version": SettingFlag(
        ("input", "schema_version"), "record version of the survey's classifier records"
    ),
    "--output-topic": SettingFlag(("output", "topic"), "score topic"),
    "--dead-letter-topic": SettingFlag(("output", "dead_letter_topic"), "dead-letter topic"),
    "--survey": SettingFlag(("model", "survey"), "survey: ztf or lsst"),
    "--bundles": SettingFlag(("model", "bundles_dir"), "bundle root", type=Path),
    "--device": SettingFlag(("model", "device"), "torch device: auto, cpu, cuda, cuda:1..."),
    "--batch-rows": SettingFlag(("batch", "max_rows"), "rows per micro-batch", type=positive_int),
    "--batch-delay-ms": SettingFlag(
        ("batch", "max_delay_ms"), "deadline of a micro-batch after its first alert", type=float
    ),
    "--metrics-port": SettingFlag(("metrics_port",), "port of /metrics (0: any free)", type=int),
    "--stop-after-idle": SettingFlag(
        ("stop_after_idle_s",), "exit after this many seconds without input", type=float
    ),
}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_setting_flags(parser: argparse.ArgumentParser, *flags: str) -> None:
    """``--config`` and the given options of :data:`SETTING_FLAGS`."""
    parser.add_argument("--config", type=Path, help="settings file (.toml, .yaml)")
    for flag in flags:
        spec = SETTING_FLAGS[flag]
        extra: dict[str, Any] = {"action": "append"} if spec.repeat else {"type": spec.type}
        parser.add_argument(
            flag,
            dest=_dest(flag),
            choices=spec.choices,
            help=f"{spec.help} ({'.'.join(spec.path)})",
            **extra,
        )


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Nested settings from the options of :data:`SETTING_FLAGS` that were given."""
    out: dict[str, Any] = {}
    for flag, spec in SETTING_FLAGS.items():
        value = getattr(args, _dest(flag), None)
        if value is None:
            continue
        node = out
        for key in spec.path[:-1]:
            node = node.setdefault(key, {})
        node[spec.path[-1]] = value
    return out


def settings_of(args: argparse.Namespace, **fixed: Any) -> Settings:
    """The settings of a command: its options over ``ALERT_ANOMALY_*`` over ``--config``;
    ``fixed`` (nested, by section) over all."""
    overrides = setting_overrides(args)
    for section, values in fixed.items():
        overrides.setdefault(section, {}).update(values)
    return load_settings(getattr(args, "config", None), overrides)
