"""The compliance report (Markdown) for the privacy officer. No PHI: instances are named by
the session's internal id, studies by pseudonymous UID, devices by manufacturer and model;
reasons are the pipeline's, which name tags and never values."""

from __future__ import annotations

import json
import platform
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from gantry_node.engine.deid.markers import method_codes
from gantry_node.version import __version__

if TYPE_CHECKING:
    from gantry_node.offline.session import Session

PASS_RULE = ("PASS: every instance that safe export releases passed verification (the node's verify stage on "
             "its stored bytes) after every step under the current policy and pixel configuration. Instances "
             "held back fail-closed by the pipeline (unreadable input, burned-in text without a machine rule, "
             "an OCR finding) are not released and do not prevent PASS; they are listed under Exceptions.")
REVIEW_RULES = {
    "verify": "a de-identified instance failed verification (residual identifying data)",
    "incomplete": "an instance has not been through every step under the current settings",
    "empty": "no instance is releasable",
}


def _kind(reason: str) -> str:
    if reason.startswith("pixels:"):
        return "pixels"
    if reason.startswith("unreadable") or reason.startswith("not imported"):
        return "input"
    if "(run " in reason or "another policy" in reason or "changed on disk" in reason:
        return "incomplete"
    return "verify"


def _category(reason: str) -> str:
    """A short, value-free label for counting reasons."""
    if "no machine rule matches" in reason:
        return "burned-in text possible, no machine rule for the device"
    if "OCR found" in reason:
        return "burned-in text found by OCR"
    if reason.startswith("pixels:"):
        return "pixel data could not be handled"
    return reason.split(":")[0][:80]


def status(session: Session) -> tuple[str, str, dict[int, list], int]:
    """(PASS or REVIEW_REQUIRED, the rule that decided, problems per instance, releasable)."""
    from gantry_node.engine.pixels.rules import RuleMatcher

    matcher = RuleMatcher(session.pixel_config.rules)
    problems: dict[int, list] = {}
    rows = session.catalogue.instances("status = 'ok'")
    for row in rows:
        found = session.check_instance(row, matcher)
        if found:
            problems[row["id"]] = found
    kinds = {_kind(f.reason) for fs in problems.values() for f in fs}
    releasable = len(rows) - len(problems)
    for key in ("verify", "incomplete"):
        if key in kinds:
            return "REVIEW_REQUIRED", REVIEW_RULES[key], problems, releasable
    if releasable == 0:
        return "REVIEW_REQUIRED", REVIEW_RULES["empty"], problems, releasable
    return "PASS", PASS_RULE, problems, releasable


def write_report(session: Session, path: Path) -> Path:
    from gantry_node.io.durable import write_atomic

    verdict, rule, problems, releasable = status(session)
    cat = session.catalogue
    rows = cat.instances()
    ok = [r for r in rows if r["status"] == "ok"]
    done = [r for r in ok if r["meta_state"] == "remediated"]
    changes: Counter = Counter()
    for r in done:
        changes.update(json.loads(r["changes"] or "{}"))
    redacted = Counter(r["pixel_rule"] for r in done if r["pixel_state"] == "redacted")
    held = Counter(_category(fs[0].reason) for fs in problems.values())
    policy = session.policy
    lines = [
        "# De-identification compliance report",
        "",
        f"Session database: `{session.path.name}`. Tool: gantry-node {__version__} (pydicom {pydicom.__version__}, "
        f"Python {platform.python_version()}). Standard: DICOM PS3.15 Annex E.",
        "",
        "## Validation Status",
        "",
        f"**{verdict}**",
        "",
        f"Rule: {rule}",
        "",
        f"- Instances releasable by safe export: {releasable}",
        f"- Instances held back: {len(problems)}",
        "",
        "## Audit trail",
        "",
        f"- Files imported: {len(rows)} ({len(ok)} instances; "
        f"{sum(1 for r in rows if r['status'] == 'not-dicom')} not DICOM, "
        f"{sum(1 for r in rows if r['status'] == 'corrupt')} unreadable, "
        f"{sum(1 for r in rows if r['status'] == 'duplicate')} duplicates)",
        f"- Instances de-identified: {len(done)}",
        f"- Patients pseudonymised: {len({r['clean_patient_id'] for r in done})}",
        f"- Dates shifted: {changes.get('shift', 0)} attributes",
        f"- UIDs replaced: {changes.get('U', 0)} attributes; removed: {changes.get('X', 0)}; emptied: "
        f"{changes.get('Z', 0)}; dummy values: {changes.get('D', 0)}; cleaned: {changes.get('C', 0)}; "
        f"pseudonymised: {changes.get('pseudonymize', 0)}",
        f"- Instances sealed (Encrypted Attributes Sequence, PS3.15 E.1.2): {sum(r['sealed'] or 0 for r in done)}",
        *([f"- Pixels redacted by rule {rule_id}: {n} instances" for rule_id, n in sorted(redacted.items())]
          or ["- Pixels redacted: none"]),
        *[f"- Held back ({reason}): {n}" for reason, n in sorted(held.items())],
        "",
        "Steps recorded:",
        "",
        *[f"- {step} / {event}: {n}" for (step, event), n in sorted(cat.audit_counts().items())],
        "",
        f"SHA-256 of the audit trail (table `audit`, one JSON line per row in id order, keys sorted): "
        f"`{session.audit_trail_sha256()}`",
        "",
        "## Exceptions",
        "",
    ]
    bad = [r for r in rows if r["status"] != "ok"]
    if not problems and not bad:
        lines.append("- none")
    for r in bad:
        lines.append(f"- instance {r['id']} ({r['status']}): {r['problem']}")
    by_id = {r["id"]: r for r in ok}
    for instance_id, found in sorted(problems.items()):
        r = by_id[instance_id]
        device = " ".join(p for p in (r["manufacturer"], r["model"]) if p) or "unknown device"
        reasons = "; ".join(sorted({f.reason for f in found}))[:300]
        lines.append(f"- instance {instance_id} ({r['modality'] or '?'}, {device}): {reasons}")
    by_problem = Counter(str(p) for found in session.problems.values() for p in set(found))
    lines += ["", "Values the DICOM library warned about at import (by tag; values withheld):", ""]
    lines += [f"- {problem}: {n} file{'s' if n != 1 else ''}"
              for problem, n in sorted(by_problem.items())] or ["- none"]
    lines += ["", "## Manifest", ""]
    studies: dict[str, list] = {}
    for r in done:
        studies.setdefault(r["clean_study_uid"], []).append(r)
    lines.append("Top studies by size (pseudonymous Study Instance UID):")
    lines.append("")
    lines.append("| Study | Instances | Bytes |")
    lines.append("| --- | --- | --- |")
    for uid, members in sorted(studies.items(), key=lambda kv: -sum(m["output_size"] or 0 for m in kv[1]))[:10]:
        lines.append(f"| {uid} | {len(members)} | {sum(m['output_size'] or 0 for m in members)} |")
    lines += ["", "Per modality: " + ", ".join(f"{m or '?'} {n}" for m, n in
                                               sorted(Counter(r["modality"] for r in ok).items())),
              "", "Per device: " + "; ".join(f"{' '.join(p for p in k if p) or '?'}: {n}" for k, n in
                                              sorted(Counter((r["manufacturer"], r["model"]) for r in ok).items())),
              "", "## Profile and options", ""]
    lines += [f"- {code} {meaning}" for code, meaning in method_codes(policy)]
    lines += [
        f"- Options: {', '.join(sorted(policy.options)) or 'none'}",
        f"- Longitudinal temporal information: {policy.date_handling}"
        + (f" (per-patient offset in {list(policy.date_shift_days)} days)" if policy.date_handling == "MODIFIED"
           else ""),
        f"- Site overrides: {len(policy.overrides)}",
        f"- Reversible identity sealing: {'on, ' + session.sealing.algorithm if session.sealer else 'off'}",
        f"- Pixel configuration: {len(session.pixel_config.rules)} machine rules; unknown devices that may carry "
        f"text: {session.pixel_config.unknown_device}; OCR gate on "
        f"{', '.join(session.pixel_config.ocr.enabled_modalities)}",
        "- Pseudonyms: keyed HMAC-SHA256 of the original values (the site secret is not in this report)",
        "",
        "## Redaction previews (after redaction)",
        "",
    ]
    previews = _previews(session, path, done)
    lines += [f"![{rule_id}]({p.relative_to(path.parent)})" for rule_id, p in previews.items()] or ["- none"]
    write_atomic(("\n".join(lines) + "\n").encode(), path, 0o644)
    return path


def _previews(session: Session, path: Path, done: list[dict]) -> dict[str, Path]:
    """One PNG per machine rule that redacted something: the redacted image, regions outlined."""
    from gantry_node.engine.pixels.codec import PixelDecodeError, decode
    from gantry_node.io.durable import write_atomic
    from gantry_node.io.pixel_files import render_preview

    rules = {r.id: r for r in session.pixel_config.rules}
    out: dict[str, Path] = {}
    for r in done:
        rule_id = r["pixel_rule"]
        if r["pixel_state"] != "redacted" or rule_id in out or rule_id not in rules:
            continue
        try:
            ds = pydicom.dcmread(session.folder / r["pixel_output"])
            decoded = decode(ds)
        except (PixelDecodeError, OSError, ValueError):
            continue
        png = render_preview(decoded.frames[0], decoded.photometric, ds, rules[rule_id].regions)
        out[rule_id] = write_atomic(png, path.with_name(f"{path.stem}_previews") / f"{rule_id}.png", 0o644)
    return out
