"""Machine rules: a signature that recognises a device, and the regions it burns text into.

Coordinates: pixels from the TOP-LEFT corner of the image; x counts columns to the right,
y counts rows down; a region covers columns x .. x+width-1 and rows y .. y+height-1 (CTP's
convention). Regions are clipped to the image; the same regions apply to every frame.

A rule with `regions: []` declares a device known to burn no text: it counts as a match (the
image is not an "unknown device"), nothing is blanked, and the OCR gate still runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydicom.dataset import Dataset

from gantry_node.engine.pixels.expr import (
    Expr,
    RuleError,
    element_number,
    element_text,
    evaluate,
    expr_from_mapping,
    expr_to_mapping,
    readings,
)

RULE_KEYS = {"id", "name", "match", "regions", "source"}


@dataclass(frozen=True)
class Region:
    x: int
    y: int
    width: int
    height: int

    def clip(self, rows: int, columns: int) -> tuple[slice, slice] | None:
        """(row slice, column slice) inside an image of this size, or None if outside it."""
        x0, y0 = max(self.x, 0), max(self.y, 0)
        x1, y1 = min(self.x + self.width, columns), min(self.y + self.height, rows)
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.width, self.height]


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    match: Expr
    regions: tuple[Region, ...]
    source: str = ""

    def matches(self, ds: Dataset) -> bool:
        return evaluate(self.match, ds)


def first_match(rules: Iterable[Rule], ds: Dataset) -> Rule | None:
    """The first rule whose signature matches `ds` (first match wins), or None."""
    for rule in rules:
        if rule.matches(ds):
            return rule
    return None


class RuleMatcher:
    """`first_match` over a fixed list of rules, remembered by what the signatures read.

    Which rule matches first depends only on the readings (`element_text` / `element_number`)
    of the attributes the signatures name, so the result is kept per tuple of readings: the
    instances of one device and series are matched once, not 52 signatures per instance."""

    MAX_ENTRIES = 4096

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(rules)
        wanted: set[tuple[int, bool]] = set()
        for rule in self.rules:
            wanted |= readings(rule.match)
        self.readings = tuple(sorted(wanted))
        self._memo: dict[tuple, int] = {}

    def first_match(self, ds: Dataset) -> Rule | None:
        try:
            key = tuple(element_number(ds, tag) if numeric else element_text(ds, tag)
                        for tag, numeric in self.readings)
        except Exception:  # noqa: BLE001 -- a value the signatures may never reach: evaluate as before
            return first_match(self.rules, ds)
        index = self._memo.get(key)
        if index is None:
            index = next((i for i, rule in enumerate(self.rules) if rule.matches(ds)), -1)
            if len(self._memo) >= self.MAX_ENTRIES:
                self._memo.clear()
            self._memo[key] = index
        return self.rules[index] if index >= 0 else None


def region_from_value(value: Any, where: str) -> Region:
    if isinstance(value, Mapping):
        unknown = set(value) - {"x", "y", "width", "height"}
        if unknown:
            raise RuleError(f"{where}: unknown key {sorted(unknown)[0]!r} (x, y, width, height)")
        missing = [k for k in ("x", "y", "width", "height") if k not in value]
        if missing:
            raise RuleError(f"{where}: missing {missing[0]}")
        numbers = [value["x"], value["y"], value["width"], value["height"]]
    elif isinstance(value, list | tuple) and len(value) == 4:
        numbers = list(value)
    else:
        raise RuleError(f"{where}: a region is {{x, y, width, height}} or [x, y, width, height]")
    for key, n in zip(("x", "y", "width", "height"), numbers, strict=True):
        if not isinstance(n, int) or isinstance(n, bool):
            raise RuleError(f"{where}: {key} must be a whole number of pixels")
        if key in ("x", "y") and n < 0:
            raise RuleError(f"{where}: {key} must be >= 0")
        if key in ("width", "height") and n <= 0:
            raise RuleError(f"{where}: {key} must be > 0")
    return Region(*numbers)


def rule_from_mapping(doc: Any, where: str, default_id: str) -> Rule:
    if not isinstance(doc, Mapping):
        raise RuleError(f"{where}: a rule must be a mapping with match and regions")
    unknown = set(doc) - RULE_KEYS
    if unknown:
        raise RuleError(f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(RULE_KEYS))})")
    if "match" not in doc:
        raise RuleError(f"{where}: missing 'match'")
    if "regions" not in doc:
        raise RuleError(f"{where}: missing 'regions' (use [] for a device known to burn no text)")
    regions = doc["regions"]
    if not isinstance(regions, list):
        raise RuleError(f"{where}.regions: must be a list")
    rule_id = doc.get("id", default_id)
    name = doc.get("name", rule_id)
    for key, value in (("id", rule_id), ("name", name)):
        if not isinstance(value, str) or not value.strip():
            raise RuleError(f"{where}.{key}: must be non-empty text")
    return Rule(
        id=rule_id,
        name=name,
        match=expr_from_mapping(doc["match"], f"{where}.match"),
        regions=tuple(region_from_value(r, f"{where}.regions[{i}]") for i, r in enumerate(regions)),
        source=str(doc.get("source", "")),
    )


def rules_from_list(docs: Any, where: str, id_prefix: str = "rule") -> list[Rule]:
    if not isinstance(docs, list):
        raise RuleError(f"{where}: must be a list of rules")
    rules = [rule_from_mapping(d, f"{where}[{i}]", f"{id_prefix}-{i + 1:03d}") for i, d in enumerate(docs)]
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if rule.id in seen:
            raise RuleError(f"{where}[{i}].id: duplicate id {rule.id!r} (also {where}[{seen[rule.id]}])")
        seen[rule.id] = i
    return rules


def rule_to_mapping(rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rule.id, "name": rule.name}
    if rule.source:
        out["source"] = rule.source
    out["match"] = expr_to_mapping(rule.match)
    out["regions"] = [dict(zip(("x", "y", "width", "height"), r.as_list(), strict=True)) for r in rule.regions]
    return out


def rules_to_yaml(rules: Iterable[Rule], header: str = "") -> str:
    body = yaml.safe_dump({"rules": [rule_to_mapping(r) for r in rules]}, sort_keys=False, allow_unicode=True,
                          width=110)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    return comment + body
