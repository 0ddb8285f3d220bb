"""The README documents every command and every policy key; every command has help."""

from __future__ import annotations

import argparse
from pathlib import Path

from gantry_node.cli import build_parser
from gantry_node.engine.deid.policy import OPTIONS, OVERRIDE_ACTIONS, POLICY_KEYS

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_is_documented_and_has_help():
    commands = _commands()
    assert "deid" in commands
    for name, parser in commands.items():
        assert f"gantry-node {name}" in README, f"README does not show `gantry-node {name}`"
        assert (parser.description or parser.format_help()).strip(), name
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"gantry-node {name} {action.option_strings[0]} has no help"


def test_every_policy_key_option_and_override_action_is_documented():
    for key in POLICY_KEYS:
        assert f"`{key}`" in README, key
    for option in OPTIONS:
        assert option in README, option
    for action in OVERRIDE_ACTIONS:
        assert action in README, action
