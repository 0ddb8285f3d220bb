"""The --policy and --secret-file options that the offline commands share, and their loading
into a Policy and Keys with one-line errors."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.engine.deid import Keys, Policy, PolicyError, SecretError
from gantry_node.io.settings import load_keys, load_policy

SECRET_ENV = "GANTRY_SECRET_FILE"


def add_policy_and_secret(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", type=Path, metavar="FILE", help="policy YAML (default: built-in policy)")
    p.add_argument("--secret-file", type=Path, metavar="FILE",
                   help=f"site secret for pseudonyms (or set {SECRET_ENV}); required")


def policy_and_keys(args: argparse.Namespace) -> tuple[Policy, Keys]:
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        raise CommandError(str(exc)) from None
    path = args.secret_file or (Path(os.environ[SECRET_ENV]) if os.environ.get(SECRET_ENV) else None)
    if path is None:
        raise CommandError(
            f"no site secret: pass --secret-file FILE or set {SECRET_ENV} "
            "(create one with: gantry-node secret init FILE)"
        )
    try:
        return policy, load_keys(path)
    except SecretError as exc:
        raise CommandError(str(exc)) from None
