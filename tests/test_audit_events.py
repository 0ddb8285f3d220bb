"""The audit trail's vocabulary is closed: every event the node writes is declared in
audit_log.EVENTS and named in the README's list, so an operator's alert rules can cover all."""

from __future__ import annotations

import re
from pathlib import Path

from gantry_node.node.audit_log import EVENTS

REPO = Path(__file__).resolve().parent.parent


def emitted_events() -> set[str]:
    names: set[str] = set()
    for path in (REPO / "gantry_node").rglob("*.py"):
        names |= set(re.findall(r"\.event\(\s*\"([a-z_]+)\"", path.read_text()))
    return names


def test_every_emitted_event_is_declared():
    emitted = emitted_events()
    assert len(emitted) > 15  # the search itself finds the node's events
    assert emitted - set(EVENTS) == set()
    assert set(EVENTS) - emitted == set(), "declared but never written"


def test_every_event_is_in_the_readme_list():
    readme = (REPO / "README.md").read_text()
    listing = readme[readme.index("Audit events:"):]
    listing = listing[:listing.index("\n\n")]
    assert {e for e in EVENTS if f"`{e}`" not in listing} == set()
