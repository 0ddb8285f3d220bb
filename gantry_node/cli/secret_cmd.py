"""`gantry-node secret init FILE`: create a site secret for the keyed pseudonyms."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gantry_node.cli import CommandError
from gantry_node.engine.deid import new_secret


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("secret", help="manage the site secret that keys the pseudonyms")
    ss = p.add_subparsers(dest="secret_command", metavar="ACTION", required=True)
    init = ss.add_parser("init", help="write a new random secret to FILE (mode 0600)",
                         description="Write a new random site secret. Every node and Session that "
                         "must give the same pseudonyms for the same study needs the same secret; "
                         "losing it means new pseudonyms for the same patients.")
    init.add_argument("file", type=Path, metavar="FILE")
    init.set_defaults(func=run_init)


def run_init(args: argparse.Namespace) -> int:
    path: Path = args.file
    if path.exists():
        raise CommandError(f"{path} exists; refusing to replace a secret (pseudonyms would change)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(new_secret() + b"\n")
    print(f"wrote a new site secret to {path} (mode 0600); keep it safe and back it up")
    return 0
