"""The configure and redact steps of Session: scaffold_config, load_config, execute_config.

The pixel stage is the node's (gantry_node.engine.pixels.stage.run_pixel_stage), run on the stored
de-identified instance with the original for the rule match and the identity for the OCR gate.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
from pydicom.dataset import Dataset

from gantry_node.engine.deid import Identity
from gantry_node.engine.encoding import encode_dataset
from gantry_node.engine.pipeline import Quarantine, Work
from gantry_node.io.durable import write_atomic
from gantry_node.io.part10 import BadInput, read_instance
from gantry_node.offline import config as cfg
from gantry_node.offline.common import SessionError, StepReport, progress_bar, read_header
from gantry_node.offline.logs import log

if TYPE_CHECKING:
    from gantry_node.offline.session import Session


def scaffold(session: Session, path: str | Path) -> Path:
    """Write the unified configuration: the policy in force and one machine rule per
    device of the inventory, regions to fill in; and a PNG of a sample image of each device
    in `<name>_previews/` (regions drawn once the file is loaded with load_config)."""
    path = Path(path)
    if path.exists():
        raise SessionError(f"{path} exists; not overwritten (load it with load_config, or pick a new name)")
    devices = session.devices
    rows = session.ok_rows()
    sizes: dict[tuple, list[tuple]] = {}
    for r in rows:
        shape = (r["rows"], r["columns"])
        bucket = sizes.setdefault((r["manufacturer"] or "", r["model"] or "", r["serial"] or ""), [])
        if shape not in bucket:
            bucket.append(shape)
    previews = write_previews(session, path, {cfg.device_rule_id(i): ((d.manufacturer, d.model, d.serial), ())
                                     for i, d in enumerate(devices, 1)}, rows)
    text = cfg.scaffold_text(session.policy, devices, sizes,
                             {k: str(p.relative_to(path.parent)) for k, p in previews.items()})
    write_atomic(text.encode("utf-8"), path, 0o644)
    session.catalogue.audit("configure", "scaffolded", devices=len(devices))
    return path


def write_previews(session: Session, config_path: Path, wanted: dict[str, tuple[tuple, tuple]],
              rows: list[dict[str, Any]]) -> dict[str, Path]:
    """One PNG per rule id: a sample image of its device (original pixels, in the config's
    previews folder, which is as sensitive as the raw data) with `regions` drawn."""
    from gantry_node.engine.pixels.codec import PixelDecodeError, decode
    from gantry_node.io.pixel_files import render_preview

    out_dir = config_path.with_name(config_path.stem + "_previews")
    written: dict[str, Path] = {}
    for rule_id, (device, regions) in wanted.items():
        sample = next((r for r in rows if (r["manufacturer"] or "", r["model"] or "", r["serial"] or "") == device
                       and r["rows"]), None)
        if sample is None:
            continue
        try:
            ds = pydicom.dcmread(sample["source"])
            decoded = decode(ds)
        except (PixelDecodeError, OSError, ValueError):
            continue
        png = render_preview(decoded.frames[0], decoded.photometric, ds, regions)
        written[rule_id] = write_atomic(png, out_dir / f"{rule_id}.png", 0o600)
    return written

def load(session: Session, path: str | Path) -> None:
    """Load the unified configuration: its policy becomes the session's (instances
    de-identified under another policy must go through apply_remediation again) and its
    pixel rules are used by execute_config. Errors name the file and the key."""
    from gantry_node.engine.pixels.rules import RuleMatcher

    path = Path(path)
    (policy, pixels), text = cfg.parse_config(path)
    if cfg.policy_fingerprint(policy) != cfg.policy_fingerprint(session.policy):
        session.set_policy(policy)
    session.pixel_config, session.pixel_config_text, session.config_path = pixels, text, path.resolve()
    session.catalogue.set_meta("pixel_config", {"path": str(path.resolve()), "text": text})
    rows = session.ok_rows()
    matcher = RuleMatcher(pixels.rules)
    wanted: dict[str, tuple[tuple, tuple]] = {}
    for rule in pixels.rules:
        if rule.id.startswith("device-") and rule.regions:
            sample = next((r for r in rows if matcher.first_match(read_header(r["source"])) is rule), None)
            if sample is not None:
                wanted[rule.id] = ((sample["manufacturer"] or "", sample["model"] or "", sample["serial"] or ""),
                                   rule.regions)
    write_previews(session, path, wanted, rows)
    session.catalogue.audit("configure", "loaded", rules=len(pixels.rules), config=cfg.text_fingerprint(text))

def pixel_target(session: Session, original_header: Dataset, matcher) -> tuple[Any, list[str]]:
    from gantry_node.engine.pixels.suspect import suspect_reasons

    config = session.pixel_config
    rule = matcher.first_match(original_header)
    suspect = suspect_reasons(original_header, config.suspect_modalities, config.suspect_sop_classes,
                              config.heuristic)
    return rule, suspect

def execute(session: Session, *, progress: bool = True) -> StepReport:
    """Redact burned-in pixels with the loaded machine rules (the node's pixel stage), on
    the de-identified instances the configuration concerns: those a rule with regions
    matches, and those that may carry burned-in text (these without a rule are held back;
    the OCR gate reads what is left). Metadata is not touched; other instances are left
    as they are."""
    from gantry_node.engine.pixels.rules import RuleMatcher
    from gantry_node.engine.pixels.stage import run_pixel_stage

    out_dir = session.store_dir("pixels")
    matcher = RuleMatcher(session.pixel_config.rules)
    rows = session.ok_rows("meta_state = 'remediated' and rows is not null")
    report = StepReport("pixels")
    updates, events = [], []
    for row in progress_bar("redacting", progress)(rows, len(rows)):
        header = read_header(row["source"])
        rule, suspect = pixel_target(session, header, matcher)
        values: dict[str, Any] = {"pixel_config_fp": session.pixel_config_fp, "pixel_output": None,
                                  "pixel_rule": rule.id if rule else None, "pixel_reason": None,
                                  "verify_state": None, "verify_reason": None}
        if not ((rule and rule.regions) or suspect):
            values["pixel_state"] = "not-needed"
            updates.append((row["id"], values))
            continue
        try:
            original = read_instance(row["source"])
            stored = read_instance(session.folder / row["output"])
            work = Work(original, dataset=stored, identity=Identity.of(original, session.policy.not_identifying))
            run_pixel_stage(work, session.pixel_config, matcher)
        except Quarantine as q:
            values.update(pixel_state="held", pixel_reason=q.reason)
            report.held_back[row["id"]] = q.reason
        except BadInput as exc:
            values.update(pixel_state="held", pixel_reason=f"unreadable instance: {exc.problem}")
            report.held_back[row["id"]] = values["pixel_reason"]
        else:
            notes = work.notes.get("pixels", {})
            if notes.get("redacted"):
                encoded = encode_dataset(work.dataset)
                target = out_dir / f"{row['id']}.dcm"
                write_atomic(encoded, target, 0o600, durable=False)
                values.update(pixel_state="redacted", pixel_output=str(target.relative_to(session.folder)),
                              output_sha256=hashlib.sha256(encoded).hexdigest(), output_size=len(encoded))
                report.counts[f"redacted by {rule.id}"] += 1
            else:
                values["pixel_state"] = "checked"
            report.done += 1
        updates.append((row["id"], values))
        events.append((values["pixel_state"], row["id"], {"rule": values["pixel_rule"]}))
    session.catalogue.update_many(updates)
    session.catalogue.audit_many("pixels", events)
    log(logging.INFO, "pixels done", instances=report.done, held_back=len(report.held_back))
    return report
