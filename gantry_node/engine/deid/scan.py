"""The PHI audit: what the policy would change in an instance, and identifying text it would
keep. Findings are data; a finding's value stays in memory (never in repr, logs or tables
unless the caller asks to reveal it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from gantry_node.engine.deid.engine import deidentify
from gantry_node.engine.deid.identity import Identity, phi_spans
from gantry_node.engine.deid.policy import Policy
from gantry_node.engine.deid.pseudonyms import Keys
from gantry_node.engine.deid.values import TEXT_VRS, as_list

# Our own markers and pseudonyms are not free text to examine.
_NOT_FREE_TEXT = {0x00120063, 0x00100010, 0x00100020, 0x00080050, 0x00200010}


@dataclass(frozen=True)
class Finding:
    path: str
    tag: str
    keyword: str
    vr: str
    reason: str
    action: str  # what the policy does (or did) about it
    value: object = field(default=None, repr=False, compare=False)

    def row(self, reveal: bool = False) -> dict:
        d = {"path": self.path, "tag": self.tag, "keyword": self.keyword, "vr": self.vr,
             "reason": self.reason, "action": self.action}
        if reveal:
            d["value"] = _text(self.value)
        return d


def scan(ds: Dataset, policy: Policy, keys: Keys) -> list[Finding]:
    """Every attribute the policy would change, plus identifying text it would keep."""
    result = deidentify(ds, policy, keys)
    findings = [
        Finding(c.path, c.tag_text, c.keyword, c.vr, c.reason, c.action, c.original)
        for c in result.changes
    ]
    findings += list(free_text_findings(result.dataset, result.identity, "keep: review"))
    return findings


def free_text_findings(ds: Dataset, identity: Identity, action: str, where: str = "") -> Iterator[Finding]:
    """Text values in `ds` (any depth) that hold the identity or look like PHI."""
    for element in ds:
        path = f"{where}({element.tag.group:04X},{element.tag.element:04X})"
        if element.VR == "SQ":
            for i, item in enumerate(element.value or []):
                yield from free_text_findings(item, identity, action, f"{path}[{i}].")
        elif element.VR in TEXT_VRS and int(element.tag) not in _NOT_FREE_TEXT and element.value:
            for value in as_list(element.value):
                for start, end, reason in phi_spans(str(value), identity):
                    yield Finding(path, f"({element.tag.group:04X},{element.tag.element:04X})",
                                  element.keyword or "", element.VR, f"free text: {reason}", action,
                                  str(value)[start:end])



def _text(value) -> str:
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple) and value and isinstance(value[0], Dataset):
        return f"<sequence of {len(value)} items>"
    return str(value)


def findings_table(findings: Iterable[Finding], reveal: bool = False) -> str:
    """A plain-text table of findings for a terminal."""
    rows = [f.row(reveal) for f in findings]
    if not rows:
        return "no findings"
    cols = list(rows[0])
    widths = {c: min(60, max(len(c), *(len(str(r[c])) for r in rows))) for c in cols}
    line = "  ".join(c.ljust(widths[c]) for c in cols)
    out = [line, "  ".join("-" * widths[c] for c in cols)]
    for r in rows:
        out.append("  ".join(str(r[c])[: widths[c]].ljust(widths[c]) for c in cols))
    return "\n".join(out)


def findings_dataframe(findings: Iterable[Finding], reveal: bool = False):
    """Findings as a pandas DataFrame (the value column only with reveal=True)."""
    import pandas as pd

    columns = ["path", "tag", "keyword", "vr", "reason", "action"] + (["value"] if reveal else [])
    return pd.DataFrame([f.row(reveal) for f in findings], columns=columns)
