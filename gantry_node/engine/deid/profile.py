"""The PS3.15 Annex E rule tables (generated into rules/ from the standard) and the action each
attribute gets under a given set of options."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, lru_cache

from gantry_node.engine.resources import rules_file

PROFILE_FILE = "ps3.15_e1-1_profile.json"
SAFE_PRIVATE_FILE = "ps3.15_e3.10-1_safe_private.json"
IOD_TYPES_FILE = "iod_attribute_types.json"

# When several options in force name an action for the same attribute, the one that retains
# more wins: K (keep) over C (clean) over anything else.
_PRECEDENCE = {"K": 0, "C": 1}


@dataclass(frozen=True)
class Rule:
    name: str
    basic: str
    options: dict[str, str]
    # action() per set of options, computed once (the engine and verification ask for every element)
    _actions: dict[frozenset[str], tuple[str, str]] = field(default_factory=dict, compare=False, repr=False)

    def action(self, options: frozenset[str]) -> tuple[str, str]:
        """(action code, reason) under the given options."""
        try:
            known = self._actions.get(options)
        except TypeError:  # options given as a (mutable) set
            return self._action(options)
        if known is None:
            known = self._actions[options] = self._action(options)
        return known

    def _action(self, options: frozenset[str]) -> tuple[str, str]:
        chosen = [(self.options[o], o) for o in options if o in self.options]
        if not chosen:
            return self.basic, "basic profile"
        code, option = min(chosen, key=lambda c: (_PRECEDENCE.get(c[0], 2), c[1]))
        return code, option


@dataclass(frozen=True)
class ProfileTables:
    by_tag: dict[int, Rule]
    by_repeating_element: dict[tuple[int, int], Rule]  # (group base, element) e.g. (0x6000, 0x3000)
    whole_repeating_group: dict[int, Rule]  # group base -> rule covering the whole group (curves)
    private: Rule
    safe_private: dict[tuple[int, str, int], str]  # (group, creator upper, element byte) -> VR


@cache
def tables() -> ProfileTables:
    doc = json.loads(rules_file(PROFILE_FILE).read_text())
    by_tag: dict[int, Rule] = {}
    by_rep: dict[tuple[int, int], Rule] = {}
    whole: dict[int, Rule] = {}
    private = None
    for r in doc["rules"]:
        rule = Rule(r["name"], r["basic"], r["options"])
        if r["kind"] == "tag":
            by_tag[int(r["tag"], 16)] = rule
        elif r["kind"] == "repeating_group":
            base = int(r["group_base"], 16)
            if r["element"] is None:
                whole[base] = rule
            else:
                by_rep[(base, int(r["element"], 16))] = rule
        elif r["kind"] == "private":
            private = rule
    if private is None:
        raise ValueError(f"{PROFILE_FILE}: no rule for private attributes")
    safe_doc = json.loads(rules_file(SAFE_PRIVATE_FILE).read_text())
    safe = {
        (int(r["group"], 16), r["creator"].upper(), int(r["element"], 16)): r["vr"]
        for r in safe_doc["rules"]
    }
    return ProfileTables(by_tag, by_rep, whole, private, safe)


def repeating_base(group: int) -> int | None:
    """0x6000 for overlay groups 6000-601E, 0x5000 for curve groups 5000-501E (even only)."""
    for base in (0x5000, 0x6000):
        if base <= group <= base + 0x1E and group % 2 == 0:
            return base
    return None


@cache
def iod_types() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    doc = json.loads(rules_file(IOD_TYPES_FILE).read_text())
    return doc["sop_classes"], doc["iods"]


def attribute_type(sop_class_uid: str | None, path: tuple[str, ...]) -> str | None:
    """'1', '2' or '3' for the attribute at `path` (sequence keywords then keyword) in the IOD of
    the SOP class; None if the SOP class is unknown."""
    sop_classes, iods = iod_types()
    iod = sop_classes.get(str(sop_class_uid or ""))
    if iod is None:
        return None
    return iods.get(iod, {}).get("/".join(path), "3")


@lru_cache(maxsize=16384)  # pure; the same few (code, SOP class, path) recur in every instance
def resolve(code: str, sop_class_uid: str | None, attr_path: tuple[str, ...], references: str = "keep") -> str:
    """The single action `code` takes for the attribute at `attr_path` in the instance's IOD.

    Combined codes (X/Z, X/D, Z/D, X/Z/D, X/Z/U*): Type 1 -> D, Type 2 -> Z, otherwise the first
    code. X/Z/U* (the reference sequences) keeps the sequence with its items de-identified and
    its UIDs replaced (U*), so references between instances resolve; with `references` "remove"
    only a Type 1 or 2 sequence is kept that way, a Type 3 one is removed (X). With an unknown
    SOP class the attribute stays present, holding nothing identifying.
    A plain X or Z on an attribute the IOD requires is kept valid the same way (X on Type 1 ->
    D, on Type 2 -> Z; Z on Type 1 -> D): the output must not gain IOD errors."""
    if "/" not in code:
        if code not in ("X", "Z"):
            return code
        kind = attribute_type(sop_class_uid, attr_path)
        if kind == "1":
            return "D"
        if kind == "2" and code == "X":
            return "Z"
        return code
    choices = code.split("/")
    if references == "keep" and "U*" in choices:
        return "U*"
    kind = attribute_type(sop_class_uid, attr_path)
    if kind is None:
        kind = "1" if "D" in choices or "U*" in choices else "2"
    if kind in ("1", "2") and "U*" in choices:
        return "U*"
    if kind == "1":
        return "D" if "D" in choices else choices[-1]
    if kind == "2":
        return "Z" if "Z" in choices else choices[-1]
    return choices[0]
