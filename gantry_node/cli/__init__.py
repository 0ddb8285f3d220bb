"""The `gantry-node` command. Each subcommand lives in its own module and is one library call
plus error translation; this module only assembles them."""

from __future__ import annotations

import argparse
import importlib
import sys

from gantry_node.version import __version__

# Each module defines `register(subparsers)`, which adds its parser(s) and sets `func`
# (a callable taking the parsed args and returning an exit status).
COMMAND_MODULES = [
    "gantry_node.cli.deid_cmd",
    "gantry_node.cli.secret_cmd",
    "gantry_node.cli.audit_cmd",
    "gantry_node.cli.keys_cmd",
    "gantry_node.cli.recover_cmd",
    "gantry_node.cli.rules_cmd",
    "gantry_node.cli.serve_cmd",
    "gantry_node.cli.status_cmd",
    "gantry_node.cli.quarantine_cmd",
    "gantry_node.cli.tail_cmd",
    "gantry_node.cli.audit_trail_cmd",
]


class CommandError(Exception):
    """An error the user can act on; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gantry-node",
        description="DICOM de-identification gateway and offline curation tool.",
    )
    parser.add_argument("--version", action="version", version=f"gantry-node {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe can be caught, not at interpreter exit
        return status
    except BrokenPipeError:
        # the reader went away (`status | head -1`): stop quietly, as Unix tools do
        _silence_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by a closed pipe
    except CommandError as exc:
        print(f"gantry-node {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
