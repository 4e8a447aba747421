"""The single command-line entry point: ``alert-anomaly <command>``.

Each command lives in its own module under ``service.commands`` and registers its subparser.
Errors raised on purpose (:class:`models.exceptions.AlertAnomalyError`) are reported as one line
on stderr with exit status 2 (3: no broker answered); tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from models.exceptions import AlertAnomalyError
from service import __version__
from service.commands import COMMANDS
from service.config import check_environment
from service.ops.logs import configure_logging
from service.ops.redaction import redact


class Parser(argparse.ArgumentParser):
    """Usage errors as one line (``--help`` has the usage), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="alert-anomaly",
        description="Anomaly scores for ZTF and Rubin/LSST alert streams.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default=None,
        help="log format (default: console on a terminal, JSON otherwise)",
    )
    parser.add_argument("--log-level", default="info", help="debug, info, warning or error")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_format, args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        check_environment()  # a misspelled or malformed ALERT_ANOMALY_* variable, in every command
        return int(args.handler(args) or 0)
    except AlertAnomalyError as exc:
        print(f"alert-anomaly {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"alert-anomaly {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
