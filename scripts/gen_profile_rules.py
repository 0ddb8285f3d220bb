#!/usr/bin/env python3
"""Generate ps3.15_e1-1_profile.json and ps3.15_e3.10-1_safe_private.json in gantry_node/engine/rules/
from the PS3.15 tables in standard/ (CSV extracted from the standard's DocBook source).

Nothing here is hand-copied: every row of the two tables becomes one rule. Run it again when the
standard's tables change; tests check the committed files match what this script generates.

    python scripts/gen_profile_rules.py [--standard standard] [--out gantry_node/engine/rules]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from pydicom.datadict import keyword_for_tag

E1_1 = "ps3.15-2023b_table_E.1-1_confidentiality_profile_attributes.csv"
E3_10 = "ps3.15-2023b_table_E.3.10-1_safe_private_attributes.csv"

# Table E.1-1 column -> the option name used in policies.
OPTION_COLUMNS = {
    "Rtn. Safe Priv. Opt.": "retain_safe_private",
    "Rtn. UIDs Opt.": "retain_uids",
    "Rtn. Dev. Id. Opt.": "retain_device_identity",
    "Rtn. Inst. Id. Opt.": "retain_institution_identity",
    "Rtn. Pat. Chars. Opt.": "retain_patient_characteristics",
    "Rtn. Long. Full Dates Opt.": "retain_longitudinal_full_dates",
    "Rtn. Long. Modif. Dates Opt.": "retain_longitudinal_modified_dates",
    "Clean Desc. Opt.": "clean_descriptors",
    "Clean Struct. Cont. Opt.": "clean_structured_content",
    "Clean Graph. Opt.": "clean_graphics",
}
ACTIONS = {"D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
TAG = re.compile(r"^\(([0-9A-Fx]{4}),([0-9A-Fx]{4})\)$", re.IGNORECASE)


def parse_tag(text: str) -> dict:
    """'(0010,0010)' -> exact tag; '(60xx,3000)' -> repeating-group range; private -> marker."""
    text = text.strip()
    if text.startswith("(gggg,eeee)") and "odd" in text:
        return {"kind": "private"}
    m = TAG.match(text)
    if not m:
        raise ValueError(f"unrecognised tag {text!r}")
    group, elem = m.group(1).upper(), m.group(2).upper()
    if "X" not in group and "X" not in elem:
        return {"kind": "tag", "tag": f"{group}{elem}"}
    if group.endswith("XX") and group[:2] in ("50", "60"):
        # Repeating groups: the even groups gggg00..gggg1E (PS3.5 7.6).
        return {"kind": "repeating_group", "group_base": f"{group[:2]}00",
                "element": None if elem == "XXXX" else elem}
    raise ValueError(f"unsupported range {text!r}")


def profile_rules(rows: list[dict]) -> list[dict]:
    rules = []
    for row in rows:
        name = row["Attribute Name"].strip()
        where = parse_tag(row["Tag"])
        basic = row["Basic Prof."].strip()
        if basic not in ACTIONS:
            raise ValueError(f"{name}: unknown basic action {basic!r}")
        options = {}
        for column, option in OPTION_COLUMNS.items():
            action = row[column].strip()
            if action:
                if action not in ACTIONS:
                    raise ValueError(f"{name}: unknown action {action!r} in {column}")
                options[option] = action
        keyword = ""
        if where["kind"] == "tag":
            keyword = keyword_for_tag(int(where["tag"], 16)) or ""
        elif where["kind"] == "repeating_group" and where["element"]:
            keyword = keyword_for_tag(int(where["group_base"] + where["element"], 16)) or ""
        rules.append({
            "name": name,
            **where,
            "keyword": keyword,
            "retired": row["Retd. (from )"].strip() == "Y",
            "in_standard_composite_iod": row["In Std. Comp. IOD (from )"].strip() == "Y",
            "basic": basic,
            "options": options,
        })
    return rules


def safe_private_rules(rows: list[dict]) -> list[dict]:
    rules = []
    for row in rows:
        m = TAG.match(row["Data Element"].strip())
        if not m or m.group(2)[:2].lower() != "xx":
            raise ValueError(f"unrecognised safe private tag {row['Data Element']!r}")
        rules.append({
            "group": m.group(1).upper(),
            "element": m.group(2)[2:].upper(),  # the low byte within the creator's block
            "creator": row["Private Creator"].strip(),
            "vr": row["VR"].strip(),
            "vm": row["VM"].strip(),
            "meaning": row["Meaning"].strip(),
        })
    return rules


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standard", type=Path, default=here / "standard")
    parser.add_argument("--out", type=Path, default=here / "gantry_node" / "engine" / "rules")
    args = parser.parse_args(argv)

    with open(args.standard / E1_1, newline="", encoding="utf-8") as f:
        profile = profile_rules(list(csv.DictReader(f)))
    with open(args.standard / E3_10, newline="", encoding="utf-8") as f:
        safe = safe_private_rules(list(csv.DictReader(f)))

    source = "DICOM PS3.15 2023b"
    outputs = {
        "ps3.15_e1-1_profile.json": {
            "source": f"{source} Table E.1-1 ({E1_1})",
            "generated_by": "scripts/gen_profile_rules.py",
            "options": list(OPTION_COLUMNS.values()),
            "rules": profile,
        },
        "ps3.15_e3.10-1_safe_private.json": {
            "source": f"{source} Table E.3.10-1 ({E3_10})",
            "generated_by": "scripts/gen_profile_rules.py",
            "rules": safe,
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name, doc in outputs.items():
        (args.out / name).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
        print(f"wrote {args.out / name}: {len(doc['rules'])} rules", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
