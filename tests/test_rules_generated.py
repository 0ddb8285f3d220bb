"""The rule files in rules/ are exactly what the generators make from the standard's tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STANDARD = REPO.parent / "shared" / "standard"


@pytest.mark.skipif(not STANDARD.is_dir(), reason="../shared/standard is not beside this checkout")
def test_profile_rules_match_the_standard_tables(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_profile_rules.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in ("ps3.15_e1-1_profile.json", "ps3.15_e3.10-1_safe_private.json"):
        assert (tmp_path / name).read_text() == (REPO / "rules" / name).read_text(), name


def test_every_table_row_is_a_rule():
    profile = json.loads((REPO / "rules" / "ps3.15_e1-1_profile.json").read_text())["rules"]
    safe = json.loads((REPO / "rules" / "ps3.15_e3.10-1_safe_private.json").read_text())["rules"]
    assert len(profile) == 611 and len(safe) == 479
    kinds = {r["kind"] for r in profile}
    assert kinds == {"tag", "repeating_group", "private"}
    assert {r["basic"] for r in profile} == {"D", "Z", "X", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*"}


def test_iod_types_cover_every_combined_code():
    profile = json.loads((REPO / "rules" / "ps3.15_e1-1_profile.json").read_text())["rules"]
    iod = json.loads((REPO / "rules" / "iod_attribute_types.json").read_text())
    combined = {r["keyword"] for r in profile if "/" in r["basic"] and r["keyword"]}
    assert set(iod["combined_code_keywords"]) == combined
    assert iod["sop_classes"]["1.2.840.10008.5.1.4.1.1.2"] == "ct-image"
