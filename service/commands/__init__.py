"""CLI commands, one module each; every module exposes ``register(subparsers)``."""

from __future__ import annotations

import argparse
from typing import Protocol

from service.commands import (
    batch,
    broker,
    compare,
    demo,
    evaluate,
    publish_sample,
    replay,
    review,
    run,
    settings,
    simulate,
    top,
    train,
)


class Command(Protocol):
    def register(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


COMMANDS: tuple[Command, ...] = (
    simulate,
    train,
    evaluate,
    compare,
    top,
    run,
    settings,
    replay,
    batch,
    demo,
    broker,
    publish_sample,
    review,
)
