"""Where the shipped data files (rules/) live, in a checkout and in an installed wheel."""

from __future__ import annotations

import sys
from pathlib import Path


def rules_dir() -> Path:
    """The rules/ directory: the source checkout's, else the one installed with the wheel."""
    checkout = Path(__file__).resolve().parent.parent / "rules"
    if checkout.is_dir():
        return checkout
    installed = Path(sys.prefix) / "share" / "gantry-node" / "rules"
    if installed.is_dir():
        return installed
    raise FileNotFoundError(f"gantry-node rules directory not found (looked in {checkout}, {installed})")


def rules_file(name: str) -> Path:
    path = rules_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"gantry-node rule file missing: {path}")
    return path
