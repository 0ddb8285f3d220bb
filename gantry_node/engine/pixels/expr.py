"""Signature expressions: boolean tests on a dataset's attributes, and their YAML form.

A test names one attribute (keyword or "(gggg,eeee)") and one operator:

    string:  equals, contains, startswith, endswith, regex   (+ ignore_case: true)
    numeric: lt, le, gt, ge, eq   (also written <, <=, >, >=, ==); compared as numbers

Combinators: {all: [...]}, {any: [...]}, {not: {...}}.

How an attribute reads as text: a missing or empty attribute is "" (so `equals: ""` tests for
absence, as in CTP); multiple values are joined with a backslash ("ORIGINAL\\PRIMARY"); a
sequence never matches a string test. Group 0002 attributes are read from the file meta
information. Numeric tests use the attribute's first value and are false when the attribute
is missing or not a number.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import Tag

STRING_OPS = ("equals", "contains", "startswith", "endswith", "regex")
NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge, "eq": operator.eq,
}
NUMERIC_ALIASES = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq"}
NUMERIC_VRS = {"US", "UL", "SS", "SL", "IS", "DS", "FL", "FD", "UV", "SV"}


class RuleError(ValueError):
    """A rule or expression that cannot be used; the message names where (e.g. rules[3].match)."""


@dataclass(frozen=True)
class Test:
    tag: int
    op: str
    value: str | float
    ignore_case: bool = False
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        return tag_label(self.tag)


@dataclass(frozen=True)
class All:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


Expr = Union[Test, All, AnyOf, Not]  # noqa: UP007 -- forward references in a runtime alias


def make_test(tag: int, op: str, value: Any, ignore_case: bool = False, where: str = "") -> Test:
    op = NUMERIC_ALIASES.get(op, op)
    if op in NUMERIC_OPS:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise RuleError(f"{where}: {op} needs a number, not {value!r}") from None
        return Test(tag, op, number, False)
    if op not in STRING_OPS:
        raise RuleError(f"{where}: unknown operator {op!r}")
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise RuleError(f"{where}: {op} needs a text value")
    text = str(value)
    pattern = None
    if op == "regex":
        try:
            pattern = re.compile(text, re.IGNORECASE if ignore_case else 0)
        except re.error as exc:
            raise RuleError(f"{where}: bad regex {text!r}: {exc}") from None
    return Test(tag, op, text, bool(ignore_case), pattern)


def parse_tag(text: Any, where: str = "") -> int:
    """A keyword ("Rows"), "(0028,0010)", "[0028,0010]", "0028,0010" or "00280010"."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"{where}: tag must be a keyword or (gggg,eeee)")
    s = text.strip()
    m = re.fullmatch(r"[(\[]?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*[)\]]?", s)
    if m:
        return int(Tag(int(m.group(1), 16), int(m.group(2), 16)))
    tag = tag_for_keyword(s)
    if tag is None:
        raise RuleError(f"{where}: unknown DICOM keyword {s!r}")
    return int(tag)


def tag_label(tag: int) -> str:
    """The keyword, or (gggg,eeee) where the keyword would not read back as this tag
    (private tags, repeating groups such as overlays 60xx)."""
    keyword = keyword_for_tag(tag)
    if keyword and tag_for_keyword(keyword) == tag:
        return keyword
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def is_numeric_tag(tag: int) -> bool:
    try:
        return dictionary_VR(tag) in NUMERIC_VRS
    except KeyError:
        return False


# --- evaluation -------------------------------------------------------------------------

def _element(ds: Dataset, tag: int):
    source = ds.file_meta if tag >> 16 == 0x0002 and hasattr(ds, "file_meta") else ds
    if source is None or tag not in source._dict:  # absent: what get() returns, without its KeyError
        return None
    return source.get(tag)


def element_text(ds: Dataset, tag: int) -> str | None:
    """The attribute as CTP reads it: "" when absent; None for a sequence."""
    elem = _element(ds, tag)
    if elem is None or elem.value is None:
        return ""
    value = elem.value
    if isinstance(value, Sequence):
        return None
    if isinstance(value, bytes):
        return value.decode("latin-1").strip("\x00 ")
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def element_number(ds: Dataset, tag: int) -> float | None:
    elem = _element(ds, tag)
    if elem is None or elem.value is None or isinstance(elem.value, Sequence | bytes):
        return None
    value = elem.value
    if isinstance(value, MultiValue | list | tuple):
        if not value:
            return None
        value = value[0]
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def evaluate(expr: Expr, ds: Dataset) -> bool:
    if isinstance(expr, All):
        return all(evaluate(e, ds) for e in expr.items)
    if isinstance(expr, AnyOf):
        return any(evaluate(e, ds) for e in expr.items)
    if isinstance(expr, Not):
        return not evaluate(expr.item, ds)
    if expr.op in NUMERIC_OPS:
        number = element_number(ds, expr.tag)
        return number is not None and NUMERIC_OPS[expr.op](number, float(expr.value))
    text = element_text(ds, expr.tag)
    if text is None:
        return False
    if expr.op == "regex":
        return expr._regex.search(text) is not None
    want = str(expr.value)
    if expr.ignore_case:
        text, want = text.casefold(), want.casefold()
    if expr.op == "equals":
        return text == want
    if expr.op == "contains":
        return want in text
    if expr.op == "startswith":
        return text.startswith(want)
    return text.endswith(want)


def readings(expr: Expr) -> set[tuple[int, bool]]:
    """What `evaluate(expr, ds)` reads of a dataset: (tag, numeric) pairs, where numeric pairs
    are read with `element_number` and the others with `element_text`. The result of
    `evaluate` is a function of these readings alone."""
    if isinstance(expr, All | AnyOf):
        return set().union(*(readings(e) for e in expr.items))
    if isinstance(expr, Not):
        return readings(expr.item)
    return {(expr.tag, expr.op in NUMERIC_OPS)}


# --- YAML form ----------------------------------------------------------------------------

def expr_from_mapping(doc: Any, where: str) -> Expr:
    if not isinstance(doc, Mapping):
        raise RuleError(f"{where}: must be a mapping (a test, or all/any/not)")
    keys = set(doc)
    for combinator, cls in (("all", All), ("any", AnyOf)):
        if combinator in doc:
            if keys != {combinator}:
                raise RuleError(f"{where}: '{combinator}' cannot be combined with {sorted(keys - {combinator})}")
            items = doc[combinator]
            if not isinstance(items, list) or not items:
                raise RuleError(f"{where}.{combinator}: must be a non-empty list")
            return cls(tuple(expr_from_mapping(e, f"{where}.{combinator}[{i}]") for i, e in enumerate(items)))
    if "not" in doc:
        if keys != {"not"}:
            raise RuleError(f"{where}: 'not' cannot be combined with {sorted(keys - {'not'})}")
        return Not(expr_from_mapping(doc["not"], f"{where}.not"))
    if "tag" not in doc:
        raise RuleError(f"{where}: a test needs 'tag' (or use all/any/not)")
    ops = [k for k in doc if k not in ("tag", "ignore_case")]
    known = set(STRING_OPS) | set(NUMERIC_OPS) | set(NUMERIC_ALIASES)
    unknown = [k for k in ops if k not in known]
    if unknown:
        names = ", ".join(STRING_OPS + tuple(NUMERIC_OPS))
        raise RuleError(f"{where}: unknown key {unknown[0]!r} (operators: {names})")
    if len(ops) != 1:
        raise RuleError(f"{where}: a test needs exactly one operator, found {len(ops)}")
    ignore_case = doc.get("ignore_case", False)
    if not isinstance(ignore_case, bool):
        raise RuleError(f"{where}.ignore_case: must be true or false")
    tag = parse_tag(doc["tag"], f"{where}.tag")
    op = ops[0]
    if ignore_case and NUMERIC_ALIASES.get(op, op) in NUMERIC_OPS:
        raise RuleError(f"{where}.ignore_case: not allowed with a numeric operator")
    return make_test(tag, op, doc[op], ignore_case, f"{where}.{op}")


def expr_to_mapping(expr: Expr) -> dict[str, Any]:
    if isinstance(expr, All):
        return {"all": [expr_to_mapping(e) for e in expr.items]}
    if isinstance(expr, AnyOf):
        return {"any": [expr_to_mapping(e) for e in expr.items]}
    if isinstance(expr, Not):
        return {"not": expr_to_mapping(expr.item)}
    value = expr.value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    out: dict[str, Any] = {"tag": expr.label, expr.op: value}
    if expr.ignore_case:
        out["ignore_case"] = True
    return out


def describe(expr: Expr) -> str:
    """One line for humans (attribute names and operators; values are device descriptors)."""
    if isinstance(expr, All):
        return " and ".join(_paren(e) for e in expr.items)
    if isinstance(expr, AnyOf):
        return " or ".join(_paren(e) for e in expr.items)
    if isinstance(expr, Not):
        return f"not {_paren(expr.item)}"
    suffix = " (ignore case)" if expr.ignore_case else ""
    return f"{expr.label} {expr.op} {expr.value!r}{suffix}"


def _paren(expr: Expr) -> str:
    return f"({describe(expr)})" if isinstance(expr, All | AnyOf) else describe(expr)
