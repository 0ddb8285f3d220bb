"""The data files the engine ships with (rules/: the tables generated from PS3.15 and the pixel
rule library), read as package data so a checkout and an installed wheel behave the same."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def rules_dir() -> Traversable:
    """The packaged rules/ directory."""
    return files("gantry_node.engine") / "rules"


def rules_file(name: str) -> Traversable:
    path = rules_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"gantry-node rule file missing from the package: rules/{name}")
    return path
