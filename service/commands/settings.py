"""``alert-anomaly settings``: the settings ``run`` would use, each with its source."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from service.commands.args import (
    SETTING_FLAGS,
    add_setting_flags,
    examples,
    setting_overrides,
    settings_of,
)
from service.config import SettingInEffect, settings_in_effect


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "settings",
        epilog=examples(
            "alert-anomaly settings --config alert-anomaly.toml",
            "ALERT_ANOMALY_BATCH__MAX_ROWS=512 alert-anomaly settings --json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="print the settings in effect and where each comes from (secrets masked)",
        description=(
            "Print every setting `run` would use with the same --config, ALERT_ANOMALY_* "
            "variables and options, with its source: default, the config file, the environment "
            "variable or the command-line option. Secrets (kafka.sasl_password, "
            "kafka.ssl_key_password, librdkafka properties whose names contain password, "
            "secret, token or key) are shown as **********."
        ),
    )
    add_setting_flags(p, *SETTING_FLAGS)
    p.add_argument("--json", action="store_true", help="a JSON list instead of the table")
    p.set_defaults(handler=run)


def table(rows: list[SettingInEffect]) -> str:
    """The settings as aligned columns: setting, value (JSON), source."""
    cells = [("setting", "value", "source")]
    cells += [(r.setting, json.dumps(r.value), r.source) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(2)]
    return "\n".join(
        f"{name:<{widths[0]}}  {value:<{widths[1]}}  {source}" for name, value, source in cells
    )


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    flags = {spec.path: flag for flag, spec in SETTING_FLAGS.items()}
    rows = settings_in_effect(
        settings, args.config, setting_overrides(args), flags, dict(os.environ)
    )
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    else:
        print(table(rows))
    return 0
