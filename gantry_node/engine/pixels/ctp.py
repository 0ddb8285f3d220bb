"""Read RSNA CTP's script language into our rules.

DicomPixelAnonymizer.script: signatures `{ expression }` each followed by one or more regions
`(x,y,width,height)`; any other text is a comment (the nearest comment line names the rule).
BurnedInPixelsFilter.script: one bare expression selecting images WITHOUT burned-in text.

Expression grammar (CTP's): `+` OR, `*` AND (binds tighter), `!` NOT, parentheses; operands
`Keyword.method("value")` or `[gggg,eeee].method("value")`; `//` starts a comment. Unlike CTP,
isLessThan / isGreaterThan compare as numbers, and `equals` of a number against a numeric
attribute (Rows, Columns, WindowWidth...) becomes a numeric `eq`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gantry_node.engine.pixels.expr import All, AnyOf, Expr, Not, RuleError, is_numeric_tag, make_test, parse_tag
from gantry_node.engine.pixels.rules import Region, Rule

METHODS = {
    "equals": ("equals", False), "equalsIgnoreCase": ("equals", True),
    "matches": ("regex", False),
    "contains": ("contains", False), "containsIgnoreCase": ("contains", True),
    "startsWith": ("startswith", False), "startsWithIgnoreCase": ("startswith", True),
    "endsWith": ("endswith", False), "endsWithIgnoreCase": ("endswith", True),
    "isLessThan": ("lt", False), "isGreaterThan": ("gt", False),
}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<tag>\[\s*[0-9A-Fa-f]{4}\s*,\s*[0-9A-Fa-f]{4}\s*\])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[*+!().])
    )""",
    re.VERBOSE,
)


class CTPSyntaxError(RuleError):
    """A CTP script that cannot be read; the message gives the line number."""


@dataclass
class _Tokens:
    items: list[tuple[str, str, int]]  # (kind, text, line)
    pos: int = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def take(self, kind: str | None = None, text: str | None = None, what: str = "") -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind) or (text and tok[1] != text):
            line = tok[2] if tok else (self.items[-1][2] if self.items else 0)
            found = f"{tok[1]!r}" if tok else "end of expression"
            raise CTPSyntaxError(f"line {line}: expected {what or text or kind}, found {found}")
        self.pos += 1
        return tok


def _strip_comment(text: str) -> str:
    """Drop `//` comments, leaving string literals alone."""
    out, in_string, i = [], False, 0
    while i < len(text):
        c = text[i]
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            in_string = not in_string
        if not in_string and text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _tokenize(text: str, first_line: int) -> _Tokens:
    text = _strip_comment(text)
    items, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            bad = text[pos:].lstrip()[:20]
            raise CTPSyntaxError(f"line {first_line + text[:pos].count(chr(10))}: cannot read {bad!r}")
        kind = m.lastgroup
        items.append((kind, m.group(kind), first_line + text[: m.start(kind)].count("\n")))
        pos = m.end()
    return _Tokens(items)


def parse_expression(text: str, first_line: int = 1) -> Expr:
    """A CTP boolean expression as our Expr."""
    tokens = _tokenize(text, first_line)
    if not tokens.items:
        raise CTPSyntaxError(f"line {first_line}: empty expression")
    expr = _parse_or(tokens)
    extra = tokens.peek()
    if extra is not None:
        raise CTPSyntaxError(f"line {extra[2]}: unexpected {extra[1]!r}")
    return expr


def _parse_or(tokens: _Tokens) -> Expr:
    items = [_parse_and(tokens)]
    while (tok := tokens.peek()) and tok[1] == "+":
        tokens.take()
        items.append(_parse_and(tokens))
    return items[0] if len(items) == 1 else AnyOf(tuple(items))


def _parse_and(tokens: _Tokens) -> Expr:
    items = [_parse_not(tokens)]
    while (tok := tokens.peek()) and tok[1] == "*":
        tokens.take()
        items.append(_parse_not(tokens))
    return items[0] if len(items) == 1 else All(tuple(items))


def _parse_not(tokens: _Tokens) -> Expr:
    tok = tokens.peek()
    if tok and tok[1] == "!":
        tokens.take()
        return Not(_parse_not(tokens))
    if tok and tok[1] == "(":
        tokens.take()
        inner = _parse_or(tokens)
        tokens.take("punct", ")", "')'")
        return inner
    return _parse_operand(tokens)


def _parse_operand(tokens: _Tokens) -> Expr:
    tok = tokens.peek()
    if tok is None or tok[0] not in ("name", "tag"):
        found = repr(tok[1]) if tok else "end of expression"
        line = tok[2] if tok else 0
        raise CTPSyntaxError(f"line {line}: expected Keyword.method(\"value\") or [gggg,eeee].method(...), "
                             f"found {found}")
    tokens.take()
    line = tok[2]
    try:
        tag = parse_tag(tok[1], f"line {line}")
    except RuleError as exc:
        raise CTPSyntaxError(str(exc)) from None
    tokens.take("punct", ".", "'.' after the attribute")
    method = tokens.take("name", what="a method name")[1]
    if method not in METHODS:
        raise CTPSyntaxError(f"line {line}: unknown method {method!r} (known: {', '.join(METHODS)})")
    tokens.take("punct", "(", "'('")
    literal = tokens.take("string", what="a quoted value")[1]
    tokens.take("punct", ")", "')'")
    value = re.sub(r"\\(.)", r"\1", literal[1:-1])
    op, ignore_case = METHODS[method]
    if op == "equals" and is_numeric_tag(tag) and _is_number(value):
        op = "eq"  # Rows.equals("512") means the number 512, also when stored as "512.0"
    try:
        return make_test(tag, op, value, ignore_case, f"line {line}")
    except RuleError as exc:
        raise CTPSyntaxError(str(exc)) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_REGION = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)")


def parse_anonymizer_script(text: str, source: str = "CTP DicomPixelAnonymizer.script") -> list[Rule]:
    """Every signature of a DicomPixelAnonymizer script, in order, as rules ctp-001, ctp-002..."""
    rules: list[Rule] = []
    pos, section, label = 0, "", ""
    while True:
        start = text.find("{", pos)
        comment = text[pos:] if start < 0 else text[pos:start]
        section, label = _names(comment, section, label)
        if start < 0:
            if "}" in comment:
                raise CTPSyntaxError(f"line {text.count(chr(10), 0, pos + comment.index('}')) + 1}: '}}' without '{{'")
            break
        end = text.find("}", start)
        if end < 0:
            raise CTPSyntaxError(f"line {text.count(chr(10), 0, start) + 1}: signature '{{' never closed")
        first_line = text.count("\n", 0, start) + 1
        expr = parse_expression(text[start + 1:end], first_line)
        regions, pos = _regions_after(text, end + 1)
        if not regions:
            raise CTPSyntaxError(f"line {first_line}: signature has no region (x,y,width,height) after it")
        number = len(rules) + 1
        name = " / ".join(p for p in (section, label) if p) or f"signature {number}"
        rules.append(Rule(f"ctp-{number:03d}", name, expr, tuple(regions), f"{source} line {first_line}"))
    return rules


def _regions_after(text: str, pos: int) -> tuple[list[Region], int]:
    regions = []
    while True:
        m = _REGION.match(text, pos + (len(text[pos:]) - len(text[pos:].lstrip())))
        if not m:
            return regions, pos
        x, y, w, h = (int(g) for g in m.groups())
        if w <= 0 or h <= 0:
            raise CTPSyntaxError(f"line {text.count(chr(10), 0, m.start()) + 1}: region with zero width or height")
        regions.append(Region(x, y, w, h))
        pos = m.end()


def _names(comment: str, section: str, label: str) -> tuple[str, str]:
    """Track the current section (text between lines of asterisks) and the nearest comment line
    (device name) in the text between signatures; a new section forgets the old label."""
    lines = [ln.strip() for ln in comment.splitlines()]
    for i, ln in enumerate(lines):
        if not ln or set(ln) == {"*"}:
            continue
        above = next((x for x in reversed(lines[:i]) if x), "")
        below = next((x for x in lines[i + 1:] if x), "")
        if set(above) == {"*"} and set(below) == {"*"}:
            section, label = ln, ""
        elif len(ln) <= 80:
            label = ln
    return section, label


def parse_filter_script(text: str) -> Expr:
    """A DicomFilter script (e.g. BurnedInPixelsFilter.script): one expression."""
    return parse_expression(text, 1)


def text_heuristic_from_filter(text: str) -> Expr:
    """CTP's BurnedInPixelsFilter selects images WITHOUT burned-in text; its negation is the
    "may carry burned-in text" heuristic."""
    return Not(parse_filter_script(text))
