"""The rule files in rules/ are exactly what the generators make from the standard's tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "gantry_node" / "engine" / "rules"
SHARED_STANDARD = REPO.parent / "shared" / "standard"


def test_profile_rules_match_the_standard_tables(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_profile_rules.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in ("ps3.15_e1-1_profile.json", "ps3.15_e3.10-1_safe_private.json"):
        assert (tmp_path / name).read_text() == (RULES / name).read_text(), name


@pytest.mark.skipif(not SHARED_STANDARD.is_dir(), reason="../shared/standard is not beside this checkout")
def test_shipped_tables_are_the_shared_standard():
    for shared in SHARED_STANDARD.glob("*.csv"):
        assert (REPO / "standard" / shared.name).read_bytes() == shared.read_bytes(), shared.name


def test_every_table_row_is_a_rule():
    profile = json.loads((RULES / "ps3.15_e1-1_profile.json").read_text())["rules"]
    safe = json.loads((RULES / "ps3.15_e3.10-1_safe_private.json").read_text())["rules"]
    assert len(profile) == 611 and len(safe) == 479
    kinds = {r["kind"] for r in profile}
    assert kinds == {"tag", "repeating_group", "private"}
    assert {r["basic"] for r in profile} == {"D", "Z", "X", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}


def test_iod_types_cover_every_combined_code():
    profile = json.loads((RULES / "ps3.15_e1-1_profile.json").read_text())["rules"]
    iod = json.loads((RULES / "iod_attribute_types.json").read_text())
    combined = {r["keyword"] for r in profile if "/" in r["basic"] and r["keyword"]}
    assert set(iod["combined_code_keywords"]) == combined
    assert iod["sop_classes"]["1.2.840.10008.5.1.4.1.1.2"] == "ct-image"
