"""The verify step of Session: why an instance must not leave (check_instance), over the cohort
(audit), and the IOD check (validate)."""

from __future__ import annotations

import hashlib
import io
import logging
from functools import cache
from typing import TYPE_CHECKING, Any

import pydicom

from gantry_node.engine.deid import Identity, verify
from gantry_node.offline import config as cfg
from gantry_node.offline import pixels_step
from gantry_node.offline.common import progress_bar, read_header
from gantry_node.offline.findings import Findings, PhiFinding
from gantry_node.offline.logs import log

if TYPE_CHECKING:
    from gantry_node.offline.session import Session


def check_instance(session: Session, row: dict[str, Any], matcher=None) -> list[PhiFinding]:
    """Why this instance must not leave ([] when it may): the verify stage on its stored
    output, and whether every step has been done under the current settings."""
    def held(reason: str, kind: str = "Instance") -> list[PhiFinding]:
        return [PhiFinding(kind, "", "", "", None, reason, "held back", row["id"])]

    if row["status"] != "ok":
        return held(f"not imported: {row['problem']}")
    if row["meta_state"] is None:
        return held("not de-identified (run apply_remediation)")
    if row["meta_state"] == "held":
        return held(row["meta_reason"])
    if row["policy_fp"] != cfg.policy_fingerprint(session.policy):
        return held("de-identified under another policy (run apply_remediation again)")
    if row["rows"] is not None:
        if row["pixel_state"] is None or row["pixel_config_fp"] != session.pixel_config_fp:
            from gantry_node.engine.pixels.rules import RuleMatcher

            rule, suspect = pixels_step.pixel_target(session, read_header(row["source"]),
                                               matcher or RuleMatcher(session.pixel_config.rules))
            if (rule and rule.regions) or suspect:
                return held("burned-in pixels not handled under the current configuration (run execute_config)",
                            "Pixels")
        elif row["pixel_state"] == "held":
            return held(row["pixel_reason"], "Pixels")
    data = session.final_path(row).read_bytes()
    if hashlib.sha256(data).hexdigest() != row["output_sha256"]:
        return held("the stored output changed on disk since it was written")
    ds = pydicom.dcmread(io.BytesIO(data))
    identity = Identity.of(read_header(row["source"]), session.policy.not_identifying)
    return [PhiFinding.of(f, row["id"]) for f in verify(ds, session.policy, identity, data)]

def audit(session: Session, *, progress: bool = True) -> Findings:
    """Residual findings on the MODIFIED cohort (falsy when clean): the verify stage on each
    stored output, and every instance held back or not yet through every step, with why."""
    from gantry_node.engine.pixels.rules import RuleMatcher

    matcher = RuleMatcher(session.pixel_config.rules)
    rows = session.ok_rows()
    items: list[PhiFinding] = []
    updates = []
    for row in progress_bar("verifying", progress)(rows, len(rows)):
        found = session.check_instance(row, matcher)
        items += found
        updates.append((row["id"], {"verify_state": "failed" if found else "clean",
                                    "verify_reason": found[0].reason if found else None}))
    session.catalogue.update_many(updates)
    failed = sum(1 for _, v in updates if v["verify_state"] == "failed")
    session.catalogue.audit("verify", "audited", instances=len(rows), failed=failed, findings=len(items))
    log(logging.INFO, "audit done", instances=len(rows), failed=failed, findings=len(items))
    return Findings(items, instances=len(rows))

def validate(session: Session):
    """Type 1 and Type 2 attributes per instance that the current state (the stored output
    once de-identified) lacks, or holds empty (Type 1), from the IOD tables the project
    generates (rules/iod_attribute_types.json; the attributes Table E.1-1 can remove or empty).
    An attribute is reported missing when a mandatory module of the IOD requires it, when a
    conditional or user-optional module requires it and that module is present (any of its
    attributes in the current state; an absent U or C module requires nothing, and removing a
    whole optional module leaves a valid instance), or, for conditional types, when the
    original had it and the current state does not (de-identification must not make an
    instance invalid). A DataFrame: instance_id, keyword, type, problem."""
    import pandas as pd

    from gantry_node.engine.deid.profile import iod_types

    sop_classes, iods = iod_types()
    tables = _module_tables()
    problems = []
    for row in session.ok_rows():
        original = read_header(row["source"])
        current = read_header(session.final_path(row)) if row["output"] else original
        iod = sop_classes.get(row["sop_class"] or "")
        if iod is None:
            problems.append({"instance_id": row["id"], "keyword": "SOPClassUID", "type": "",
                             "problem": "SOP class not in the IOD tables"})
            continue
        required = tables["required"].get(iod, {})
        by_module = tables["module_required"].get(iod, {})
        for keyword, kind in sorted(iods.get(iod, {}).items()):
            tag = _tag(keyword) if "/" not in keyword else None
            if tag is None or kind not in ("1", "2") or tag == 0x7FE00010:
                continue
            if tag not in current:
                if keyword in required or any(_present(m, current, tables) for m in by_module.get(keyword, [])):
                    lost = "removed" if tag in original else "missing"
                    problems.append({"instance_id": row["id"], "keyword": keyword, "type": kind,
                                     "problem": f"Type {kind} attribute {lost}"})
                elif tag in original and keyword not in by_module:
                    problems.append({"instance_id": row["id"], "keyword": keyword, "type": kind,
                                     "problem": f"Type {kind} attribute removed"})
            elif kind == "1" and current[tag].is_empty:
                problems.append({"instance_id": row["id"], "keyword": keyword, "type": kind,
                                 "problem": "Type 1 attribute empty"})
    return pd.DataFrame(problems, columns=["instance_id", "keyword", "type", "problem"])


def _present(module: str, ds: pydicom.Dataset, tables: dict[str, Any]) -> bool:
    """Whether `ds` holds any top-level attribute of `module`."""
    return any((t := _tag(k)) is not None and t in ds for k in tables["module_keywords"].get(module, []))


@cache
def _module_tables() -> dict[str, Any]:
    """The module flags of rules/iod_attribute_types.json (scripts/gen_iod_types.py)."""
    import json

    from gantry_node.engine.resources import rules_file

    doc = json.loads(rules_file("iod_attribute_types.json").read_text())
    return {k: doc.get(k, {}) for k in ("required", "module_required", "module_keywords")}


@cache
def _tag(keyword: str) -> int | None:
    """The tag of a keyword; a repeating group's (OverlayData, 60xx3000) in its first group."""
    from pydicom.datadict import RepeatersDictionary, tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        mask = next((m for m, entry in RepeatersDictionary.items() if entry[4] == keyword), None)
        tag = int(mask.replace("x", "0"), 16) if mask else None
    return tag
