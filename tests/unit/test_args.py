"""The command line offers what the settings' types allow (service.commands.args): the choices
of a setting flag are its setting's ``Literal`` values, never a second list."""

from __future__ import annotations

import argparse
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from service.commands.args import SETTING_FLAGS, add_setting_flags, setting_choices
from service.config import InputFormat, Settings


def annotation(path: tuple[str, ...]) -> Any:
    model: Any = Settings
    for key in path[:-1]:
        model = model.model_fields[key].annotation
        assert issubclass(model, BaseModel)
    return model.model_fields[path[-1]].annotation


def every_flag() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, *SETTING_FLAGS)
    return {a.option_strings[0]: a for a in parser._actions if a.option_strings}


def test_every_setting_flag_offers_the_values_of_its_settings_type() -> None:
    actions = every_flag()
    with_choices = set()
    for flag, spec in SETTING_FLAGS.items():
        kind = annotation(spec.path)
        expected = get_args(kind) if get_origin(kind) is Literal else None
        assert actions[flag].choices == expected, flag
        if expected:
            with_choices.add(flag)
    assert "--input-format" in with_choices
    assert actions["--input-format"].choices == get_args(InputFormat)


def test_a_value_the_type_does_not_allow_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, "--input-format")
    assert parser.parse_args(["--input-format", "confluent"]).input_format == "confluent"
    with pytest.raises(SystemExit):
        parser.parse_args(["--input-format", "protobuf"])
    assert "invalid choice: 'protobuf'" in capsys.readouterr().err


def test_optional_literals_and_other_types() -> None:
    mechanisms = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
    assert setting_choices(("kafka", "sasl_mechanism")) == mechanisms  # Literal[...] | None
    assert setting_choices(("model", "inference")) == ("auto", "process", "inline")
    assert setting_choices(("model", "device")) is None  # any torch device name
    assert setting_choices(("metrics_port",)) is None
