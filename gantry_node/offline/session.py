"""`Session`: the library front door for curating a folder offline, over the node's engine.

    import gantry_node as gantry
    session = gantry.Session("gantry.db")          # opens or creates; resumes a saved session
    session.import_folder("./raw_dicom_data")      # headers only; bad files reported and skipped
    session.inventory()                            # devices by manufacturer, model, serial
    findings = session.scan_for_phi()              # PhiFinding records
    session.save_analysis(findings)
    session.enable_reversible_anonymization("broker-cert.pem")
    session.preserve_identities(findings)
    session.apply_remediation(findings)            # metadata: deidentify + seal
    session.scaffold_config("privacy_config.yaml") # policy + one machine rule per device
    session.load_config("privacy_config.yaml")
    session.execute_config()                       # pixels, on the instances the rules concern
    session.audit()                                # residual findings on the modified cohort
    session.export("./clean", safe=True)           # only what passes verification
    session.generate_report("compliance_report.md")
    session.save()

Where things are kept (beside the database, all created by the session, mode 0600/0700):
- `gantry.db`: the catalogue, every decision and the audit trail (offline/catalogue.py);
- `gantry.db.secret`: the site secret, created on first use unless `secret_file=` or
  GANTRY_SECRET_FILE names the node's (then library and node give the same pseudonyms);
- `gantry.db.d/instances/<id>.dcm`: each instance after apply_remediation (metadata only);
- `gantry.db.d/pixels/<id>.dcm`: after execute_config, for the instances whose pixels changed.
Every step commits to the database as it finishes; save() makes it durable (fsync, WAL
checkpoint). The session never deletes or overwrites a file it did not create.

The stages are the node's (gantry_node.pipeline): the same inputs, secret and policy give
byte-identical outputs to `gantry-node deid` and the node's worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from gantry_node.deid import Identity, Keys, Policy, SecretError, new_secret, policy_from_mapping, verify
from gantry_node.deid.encoding import encode_dataset
from gantry_node.dicomio import BadInput, read_instance, write_atomic
from gantry_node.offline import config as cfg
from gantry_node.offline import steps
from gantry_node.offline.catalogue import Catalogue, is_sqlite_file
from gantry_node.offline.cohort import Device, Patient, build_devices, build_graph
from gantry_node.offline.findings import Findings, PhiFinding
from gantry_node.offline.importer import catalogue_files, iter_files
from gantry_node.offline.logs import configure_from_env, log
from gantry_node.pipeline import Engine, Quarantine, Work
from gantry_node.settings_files import load_keys, load_policy

SECRET_ENV = "GANTRY_SECRET_FILE"


class SessionError(ValueError):
    """The session cannot do what was asked; the message names the file or step."""


@dataclass
class ImportReport:
    catalogued: int = 0
    already_known: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (path, status, reason)

    def summary(self) -> str:
        kinds = Counter(s for _, s, _ in self.skipped)
        return (f"{self.catalogued} instances catalogued, {self.already_known} already in the session, "
                f"{kinds.get('not-dicom', 0)} not DICOM, {kinds.get('corrupt', 0)} unreadable, "
                f"{kinds.get('duplicate', 0)} duplicates")

    def __repr__(self) -> str:
        return f"ImportReport({self.summary()})"


@dataclass
class IdentityBackup:
    """What preserve_identities() guarantees: who can recover, what is sealed, what is not covered."""

    recipients: list[str]  # certificate subjects
    algorithm: str
    sealed: list[int] = field(default_factory=list)  # instances whose stored output carries the seal
    pending: list[int] = field(default_factory=list)  # not de-identified yet: apply_remediation seals them
    not_covered: list[PhiFinding] = field(default_factory=list)  # identifying text the policy keeps

    def __repr__(self) -> str:
        return (f"IdentityBackup({len(self.recipients)} recipient(s), {self.algorithm}, {len(self.sealed)} sealed, "
                f"{len(self.pending)} to seal in apply_remediation, {len(self.not_covered)} findings not covered)")


@dataclass
class StepReport:
    step: str
    done: int = 0
    held_back: dict[int, str] = field(default_factory=dict)  # instance id -> reason (no PHI)
    counts: Counter = field(default_factory=Counter)
    not_addressed: list[PhiFinding] = field(default_factory=list)

    def __repr__(self) -> str:
        extra = "".join(f", {k}: {v}" for k, v in sorted(self.counts.items()))
        return f"StepReport({self.step}: {self.done} done, {len(self.held_back)} held back{extra})"


class Session:
    def __init__(self, path: str | Path = "gantry.db", *, secret_file: str | Path | None = None,
                 policy: Policy | str | Path | None = None) -> None:
        configure_from_env()
        path = Path(path)
        log(logging.DEBUG, "session open", path=str(path))
        if path.exists() and (not path.is_file() or (path.stat().st_size and not is_sqlite_file(path))):
            raise SessionError(f"{path} exists and is not a session database (not a SQLite file); it is left "
                               "untouched. Pass a new or existing .db path; a site secret goes in secret_file=")
        self.path = path
        self.catalogue = Catalogue(path)
        self.folder = Path(str(path) + ".d")
        self.keys, self.secret_path = self._load_secret(secret_file)
        stored_policy = self.catalogue.get_meta("policy")
        if policy is not None:
            self._set_policy(policy if isinstance(policy, Policy) else load_policy(policy))
        elif stored_policy is not None:
            self.policy = policy_from_mapping(stored_policy, f"{path}: policy")
        else:
            self._set_policy(load_policy(None))
        self.sealing = None
        self.sealer = None
        sealing = self.catalogue.get_meta("sealing")
        if sealing:
            self._enable_sealing(sealing["certificates"], sealing["algorithm"])
        self.pixel_config, self.pixel_config_text, self.config_path = None, "", None
        self._restore_pixel_config()

    # -- settings ----------------------------------------------------------------------------
    def _load_secret(self, secret_file: str | Path | None) -> tuple[Keys, Path]:
        chosen = secret_file or os.environ.get(SECRET_ENV) or None
        if chosen is not None:
            secret = Path(chosen)
            if is_sqlite_file(secret):
                raise SecretError(f"{secret} is a SQLite database, not a site secret")
        else:
            secret = Path(str(self.path) + ".secret")
            if not secret.exists():
                fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(new_secret() + b"\n")
                self.catalogue.set_meta("secret_created", str(secret))
                log(logging.WARNING, f"created a new site secret at {secret} (mode 0600); keep it and back it up: "
                    "the pseudonyms depend on it. To give the same pseudonyms as a node, pass its secret "
                    f"as secret_file= or set {SECRET_ENV}")
        keys = load_keys(secret)
        fingerprint = keys.identifier("session-secret-fingerprint", "gantry")
        known = self.catalogue.get_meta("secret_fingerprint")
        if known is None:
            self.catalogue.set_meta("secret_fingerprint", fingerprint)
        elif known != fingerprint:
            raise SecretError(f"{self.path} was started with another site secret than {secret}; its pseudonyms "
                              "would change. Pass the secret the session was created with")
        return keys, secret

    def _set_policy(self, policy: Policy) -> None:
        self.policy = policy
        self.catalogue.set_meta("policy", cfg.policy_to_mapping(policy))

    def _restore_pixel_config(self) -> None:
        stored = self.catalogue.get_meta("pixel_config")
        if stored:
            _, self.pixel_config = cfg.parse_config_text(stored["text"], Path(stored["path"]))
            self.pixel_config_text, self.config_path = stored["text"], Path(stored["path"])
        else:
            from gantry_node.pixels.config import parse_pixels_section

            self.pixel_config = parse_pixels_section(None)  # fail closed from the start: shipped rules

    @property
    def pixel_config_fp(self) -> str:
        return cfg.text_fingerprint(self.pixel_config_text)

    @property
    def engine(self) -> Engine:
        """The node's pipeline engine for this session's policy, secret and sealing."""
        from gantry_node.pixels.stage import make_pixel_stage

        return Engine(self.policy, self.keys, sealer=self.sealer, pixel_stage=make_pixel_stage(self.pixel_config))

    def _store_dir(self, kind: str) -> Path:
        """gantry.db.d/<kind>, created by this session (a marker file holds the session's id,
        so the folder is recognised wherever the session is opened from)."""
        session_id = self.catalogue.get_meta("session_id")
        if session_id is None:
            session_id = uuid.uuid4().hex
            self.catalogue.set_meta("session_id", session_id)
        marker = self.folder / ".gantry-session"
        if not self.folder.exists():
            self.folder.mkdir(mode=0o700)
            marker.write_text(session_id + "\n")
        elif not marker.is_file() or marker.read_text().strip() != session_id:
            raise SessionError(f"{self.folder} exists and was not created by this session; move it away")
        target = self.folder / kind
        target.mkdir(mode=0o700, exist_ok=True)
        return target

    # -- 1. import ---------------------------------------------------------------------------
    def import_folder(self, folder: str | Path, *, workers: int | None = None,
                      progress: bool = True) -> ImportReport:
        """Catalogue every file under `folder` (headers only; pixels stay on disk). Files
        already in the session are skipped; non-DICOM and unreadable files are reported with
        the reason and kept out of every later step. Large folders are read across processes."""
        folder = Path(folder)
        if not folder.exists():
            raise SessionError(f"{folder} does not exist")
        known = self.catalogue.known_sources()
        own = str(self.path.resolve())  # the database, its -wal/-shm and .secret files
        paths = [str(p.resolve()) for p in iter_files(folder, exclude=[self.folder])
                 if not str(p.resolve()).startswith(own)]
        new = [p for p in paths if p not in known]
        rows = catalogue_files(new, _bar("importing", progress), workers)
        seen = {r["sop_uid"]: r["id"] for r in self.catalogue.instances("status = 'ok'")}
        report = ImportReport(already_known=len(paths) - len(new))
        for row in rows:
            if row["status"] == "ok":
                if row["sop_uid"] in seen:
                    row.update(status="duplicate", problem=f"same SOP Instance UID as instance {seen[row['sop_uid']]}")
                else:
                    seen[row["sop_uid"]] = -1
            if row["status"] == "ok":
                report.catalogued += 1
            else:
                report.skipped.append((row["source"], row["status"], row["problem"]))
        self.catalogue.add_instances(rows)
        statuses = Counter(r["status"] for r in rows)
        self.catalogue.audit("import", "imported", folder=str(folder), **statuses)
        log(logging.INFO, "import done", **statuses)
        return report

    ingest = import_folder

    # -- 2. the cohort -----------------------------------------------------------------------
    @property
    def patients(self) -> list[Patient]:
        """Patient -> studies -> series -> instances (a snapshot of the current state)."""
        return build_graph(self.catalogue.instances(), self.folder)

    @property
    def devices(self) -> list[Device]:
        """Devices by (manufacturer, model, serial), most instances first."""
        return build_devices(self.catalogue.instances())

    def inventory(self):
        """The device table (a DataFrame): one row per (manufacturer, model, serial)."""
        import pandas as pd

        devices = self.devices
        self.catalogue.audit("inventory", "examined", devices=len(devices))
        log(logging.INFO, "inventory", devices=len(devices))
        return pd.DataFrame([{"Manufacturer": d.manufacturer, "ManufacturerModelName": d.model,
                              "DeviceSerialNumber": d.serial, "instances": d.instances,
                              "modalities": ", ".join(d.modalities), "burned_in_annotation": d.burned_in_annotation}
                             for d in devices],
                            columns=["Manufacturer", "ManufacturerModelName", "DeviceSerialNumber", "instances",
                                     "modalities", "burned_in_annotation"])

    examine = inventory

    def _ok_rows(self, where: str = "", params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return self.catalogue.instances("status = 'ok'" + (f" and ({where})" if where else ""), params)

    # -- 3. PHI scan -------------------------------------------------------------------------
    def scan_for_phi(self, rules: Policy | str | Path | None = None, *, progress: bool = True,
                     workers: int | None = None) -> Findings:
        """What the policy (or the policy file `rules`) would change in every original
        instance, and identifying text it would keep. Values stay in memory."""
        policy = self.policy if rules is None else rules if isinstance(rules, Policy) else load_policy(rules)
        rows = self._ok_rows()
        results = steps.run(steps.scan_one, [(r["id"], r["source"]) for r in rows],
                            {"policy": policy, "keys": self.keys}, _bar("scanning", progress), workers)
        items: list[PhiFinding] = [f for found in results for f in found]
        findings = Findings(items, instances=len(rows))
        self.catalogue.audit("scan", "scanned", instances=len(rows), findings=len(items))
        log(logging.INFO, "scan done", instances=len(rows), findings=len(items))
        return findings

    def save_analysis(self, findings: Findings) -> int:
        """Persist the findings (without values) as a numbered analysis; returns its number."""
        rows = [{k: v for k, v in f.row().items()} for f in findings]
        findings.analysis = self.catalogue.save_findings(rows)
        self.catalogue.audit("analysis", "saved", analysis=findings.analysis, findings=len(rows))
        return findings.analysis

    def load_analysis(self, analysis: int | None = None) -> Findings:
        """A saved analysis (the last one by default), without values."""
        rows = self.catalogue.findings(analysis)
        items = [PhiFinding(r["entity_type"], r["field_name"], r["tag"], r["path"], None, r["reason"], r["action"],
                            r["instance_id"]) for r in rows]
        return Findings(items, instances=len({r["instance_id"] for r in rows}),
                        analysis=rows[0]["analysis"] if rows else None)

    # -- 4. reversible de-identification (PS3.15 E.1.2) ----------------------------------------
    def enable_reversible_anonymization(self, cert_path: str | Path | list[str | Path],
                                        algorithm: str = "aes256") -> Session:
        """Seal the original values of everything apply_remediation removes or replaces into
        each instance (Encrypted Attributes Sequence, CMS to the certificate(s)). Refuses an
        unreadable, expired or non-RSA certificate."""
        paths = cert_path if isinstance(cert_path, list | tuple) else [cert_path]
        paths = [str(Path(p).resolve()) for p in paths]
        self._enable_sealing(paths, algorithm)
        self.catalogue.set_meta("sealing", {"certificates": paths, "algorithm": algorithm})
        self.catalogue.audit("sealing", "enabled", recipients=len(paths), algorithm=algorithm)
        return self

    def _enable_sealing(self, paths: list[str], algorithm: str) -> None:
        from gantry_node.seal import parse_sealing_section

        sealing = parse_sealing_section(list(paths), {"algorithm": algorithm}, "enable_reversible_anonymization")
        self.sealing, self.sealer = sealing, sealing.sealer()

    def preserve_identities(self, findings: Findings | Iterable[PhiFinding] | None = None) -> IdentityBackup:
        """Back up the identities before they are removed: instances already de-identified
        without a seal are de-identified again with it (a seal needs the originals); the rest
        are sealed by apply_remediation. `findings` are checked against what the seal covers:
        the seal holds every attribute the policy changes; identifying text the policy keeps
        is listed in `not_covered` (change the policy to clean it)."""
        if self.sealer is None or self.sealing is None:
            raise SessionError("preserve_identities needs a recipient certificate: call "
                               "enable_reversible_anonymization(cert_path) first")
        unsealed = [r["id"] for r in self._ok_rows("output is not null and sealed = 0")]
        if unsealed:
            self._remediate(self._ok_rows(f"id in ({','.join(map(str, unsealed))})"), "backup", progress=False)
        backup = IdentityBackup(
            recipients=[c.subject.rfc4514_string() for c in self.sealing.recipients],
            algorithm=self.sealing.algorithm,
            sealed=[r["id"] for r in self._ok_rows("output is not null and sealed = 1")],
            pending=[r["id"] for r in self._ok_rows("output is null")],
            not_covered=[f for f in (findings or []) if f.action.startswith("keep")],
        )
        self.catalogue.audit("backup", "identities", sealed=len(backup.sealed), pending=len(backup.pending),
                             not_covered=len(backup.not_covered))
        return backup

    backup_identities = preserve_identities

    def recover_patient_identity(self, path_or_dataset: str | Path | Dataset, key_path: str | Path,
                                 cert_path: str | Path | None = None) -> Dataset:
        """The re-identified copy of a sealed instance: original values back. Needs the honest
        broker's private key."""
        from gantry_node.seal import load_certificate, load_private_key, recover

        ds = path_or_dataset if isinstance(path_or_dataset, Dataset) else read_instance(path_or_dataset)
        cert = load_certificate(cert_path) if cert_path is not None else None
        return recover(ds, load_private_key(key_path), cert).dataset

    # -- 5. metadata -------------------------------------------------------------------------
    def apply_remediation(self, findings: Findings | None = None, *, progress: bool = True,
                          workers: int | None = None) -> StepReport:
        """De-identify the metadata of every catalogued instance (the node's deidentify and
        seal stages; pixels untouched), into the session folder. Re-running redoes it (and
        invalidates pixel work done on the previous output). Findings whose action is "keep"
        are returned in `not_addressed`: the policy keeps them; add an override to change that."""
        report = self._remediate(self._ok_rows(), "remediate", progress, workers)
        report.not_addressed = [f for f in (findings or []) if f.action.startswith("keep")]
        return report

    anonymize_metadata = apply_remediation

    def _remediate(self, rows: list[dict[str, Any]], step: str, progress: bool,
                   workers: int | None = None) -> StepReport:
        out_dir = self._store_dir("instances")
        context = {"engine": Engine(self.policy, self.keys, sealer=self.sealer), "folder": self.folder,
                   "policy_fp": cfg.policy_fingerprint(self.policy)}
        items = [(r["id"], r["source"], str(out_dir / f"{r['id']}.dcm")) for r in rows]
        results = steps.run(steps.remediate_one, items, context, _bar("de-identifying", progress), workers)
        report = StepReport(step)
        for instance_id, values, changes in results:
            if values["meta_state"] == "held":
                report.held_back[instance_id] = values["meta_reason"]
            else:
                report.done += 1
                report.counts.update(changes)
        self.catalogue.update_many((i, v) for i, v, _ in results)
        self.catalogue.audit_many(step, [(v["meta_state"], i, {"sealed": v.get("sealed", 0)}) for i, v, _ in results])
        log(logging.INFO, f"{step} done", instances=report.done, held_back=len(report.held_back))
        return report

    # -- 6. configuration and pixels ---------------------------------------------------------
    def scaffold_config(self, path: str | Path) -> Path:
        """Write the unified configuration: the policy in force and one machine rule per
        device of the inventory, regions to fill in; and a PNG of a sample image of each device
        in `<name>_previews/` (regions drawn once the file is loaded with load_config)."""
        path = Path(path)
        if path.exists():
            raise SessionError(f"{path} exists; not overwritten (load it with load_config, or pick a new name)")
        devices = self.devices
        rows = self._ok_rows()
        sizes: dict[tuple, list[tuple]] = {}
        for r in rows:
            shape = (r["rows"], r["columns"])
            bucket = sizes.setdefault((r["manufacturer"] or "", r["model"] or "", r["serial"] or ""), [])
            if shape not in bucket:
                bucket.append(shape)
        previews = self._previews(path, {cfg.device_rule_id(i): ((d.manufacturer, d.model, d.serial), ())
                                         for i, d in enumerate(devices, 1)}, rows)
        text = cfg.scaffold_text(self.policy, devices, sizes,
                                 {k: str(p.relative_to(path.parent)) for k, p in previews.items()})
        write_atomic(text.encode("utf-8"), path, 0o644)
        self.catalogue.audit("configure", "scaffolded", devices=len(devices))
        return path

    setup_config = scaffold_config

    def _previews(self, config_path: Path, wanted: dict[str, tuple[tuple, tuple]],
                  rows: list[dict[str, Any]]) -> dict[str, Path]:
        """One PNG per rule id: a sample image of its device (original pixels, in the config's
        previews folder, which is as sensitive as the raw data) with `regions` drawn."""
        from gantry_node.pixels.api import render_preview
        from gantry_node.pixels.codec import PixelDecodeError, decode

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

    def load_config(self, path: str | Path) -> Session:
        """Load the unified configuration: its policy becomes the session's (instances
        de-identified under another policy must go through apply_remediation again) and its
        pixel rules are used by execute_config. Errors name the file and the key."""
        from gantry_node.pixels.rules import RuleMatcher

        path = Path(path)
        (policy, pixels), text = cfg.parse_config(path)
        if cfg.policy_fingerprint(policy) != cfg.policy_fingerprint(self.policy):
            self._set_policy(policy)
        self.pixel_config, self.pixel_config_text, self.config_path = pixels, text, path.resolve()
        self.catalogue.set_meta("pixel_config", {"path": str(path.resolve()), "text": text})
        rows = self._ok_rows()
        matcher = RuleMatcher(pixels.rules)
        wanted: dict[str, tuple[tuple, tuple]] = {}
        for rule in pixels.rules:
            if rule.id.startswith("device-") and rule.regions:
                sample = next((r for r in rows if matcher.first_match(_read_header(r["source"])) is rule), None)
                if sample is not None:
                    wanted[rule.id] = ((sample["manufacturer"] or "", sample["model"] or "", sample["serial"] or ""),
                                       rule.regions)
        self._previews(path, wanted, rows)
        self.catalogue.audit("configure", "loaded", rules=len(pixels.rules), config=cfg.text_fingerprint(text))
        return self

    def _pixel_target(self, original_header: Dataset, matcher) -> tuple[Any, list[str]]:
        from gantry_node.pixels.suspect import suspect_reasons

        config = self.pixel_config
        rule = matcher.first_match(original_header)
        suspect = suspect_reasons(original_header, config.suspect_modalities, config.suspect_sop_classes,
                                  config.heuristic)
        return rule, suspect

    def execute_config(self, *, progress: bool = True) -> StepReport:
        """Redact burned-in pixels with the loaded machine rules (the node's pixel stage), on
        the de-identified instances the configuration concerns: those a rule with regions
        matches, and those that may carry burned-in text (these without a rule are held back;
        the OCR gate reads what is left). Metadata is not touched; other instances are left
        as they are."""
        from gantry_node.pixels.rules import RuleMatcher
        from gantry_node.pixels.stage import run_pixel_stage

        out_dir = self._store_dir("pixels")
        matcher = RuleMatcher(self.pixel_config.rules)
        rows = self._ok_rows("meta_state = 'remediated' and rows is not null")
        report = StepReport("pixels")
        updates, events = [], []
        for row in _bar("redacting", progress)(rows, len(rows)):
            header = _read_header(row["source"])
            rule, suspect = self._pixel_target(header, matcher)
            values: dict[str, Any] = {"pixel_config_fp": self.pixel_config_fp, "pixel_output": None,
                                      "pixel_rule": rule.id if rule else None, "pixel_reason": None,
                                      "verify_state": None, "verify_reason": None}
            if not ((rule and rule.regions) or suspect):
                values["pixel_state"] = "not-needed"
                updates.append((row["id"], values))
                continue
            try:
                original = read_instance(row["source"])
                stored = read_instance(self.folder / row["output"])
                work = Work(original, dataset=stored, identity=Identity.of(original, self.policy.not_identifying))
                run_pixel_stage(work, self.pixel_config, matcher)
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
                    values.update(pixel_state="redacted", pixel_output=str(target.relative_to(self.folder)),
                                  output_sha256=hashlib.sha256(encoded).hexdigest(), output_size=len(encoded))
                    report.counts[f"redacted by {rule.id}"] += 1
                else:
                    values["pixel_state"] = "checked"
                report.done += 1
            updates.append((row["id"], values))
            events.append((values["pixel_state"], row["id"], {"rule": values["pixel_rule"]}))
        self.catalogue.update_many(updates)
        self.catalogue.audit_many("pixels", events)
        log(logging.INFO, "pixels done", instances=report.done, held_back=len(report.held_back))
        return report

    redact_pixels = execute_config

    # -- 7. verification ---------------------------------------------------------------------
    def final_path(self, row: dict[str, Any]) -> Path | None:
        rel = row.get("pixel_output") or row.get("output")
        return self.folder / rel if rel else None

    def check_instance(self, row: dict[str, Any], matcher=None) -> list[PhiFinding]:
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
        if row["policy_fp"] != cfg.policy_fingerprint(self.policy):
            return held("de-identified under another policy (run apply_remediation again)")
        if row["rows"] is not None:
            if row["pixel_state"] is None or row["pixel_config_fp"] != self.pixel_config_fp:
                from gantry_node.pixels.rules import RuleMatcher

                rule, suspect = self._pixel_target(_read_header(row["source"]),
                                                   matcher or RuleMatcher(self.pixel_config.rules))
                if (rule and rule.regions) or suspect:
                    return held("burned-in pixels not handled under the current configuration (run execute_config)",
                                "Pixels")
            elif row["pixel_state"] == "held":
                return held(row["pixel_reason"], "Pixels")
        data = self.final_path(row).read_bytes()
        if hashlib.sha256(data).hexdigest() != row["output_sha256"]:
            return held("the stored output changed on disk since it was written")
        ds = pydicom.dcmread(_bytes_file(data))
        identity = Identity.of(_read_header(row["source"]), self.policy.not_identifying)
        return [PhiFinding.of(f, row["id"]) for f in verify(ds, self.policy, identity, data)]

    def audit(self, *, progress: bool = True) -> Findings:
        """Residual findings on the MODIFIED cohort (falsy when clean): the verify stage on each
        stored output, and every instance held back or not yet through every step, with why."""
        from gantry_node.pixels.rules import RuleMatcher

        matcher = RuleMatcher(self.pixel_config.rules)
        rows = self._ok_rows()
        items: list[PhiFinding] = []
        updates = []
        for row in _bar("verifying", progress)(rows, len(rows)):
            found = self.check_instance(row, matcher)
            items += found
            updates.append((row["id"], {"verify_state": "failed" if found else "clean",
                                        "verify_reason": found[0].reason if found else None}))
        self.catalogue.update_many(updates)
        failed = sum(1 for _, v in updates if v["verify_state"] == "failed")
        self.catalogue.audit("verify", "audited", instances=len(rows), failed=failed, findings=len(items))
        log(logging.INFO, "audit done", instances=len(rows), failed=failed, findings=len(items))
        return Findings(items, instances=len(rows))

    def validate(self):
        """Type 1 and Type 2 attributes per instance that the current state (the stored output
        once de-identified) lacks, or holds empty (Type 1), from the IOD tables the project
        generates (rules/iod_attribute_types.json). Those tables list the attributes Table
        E.1-1 can remove, from every module of the IOD, without saying which modules are
        mandatory: so an attribute is reported when the original had it and the current state
        does not (de-identification must not make an instance invalid), or when a Type 1
        attribute is empty. A DataFrame: instance_id, keyword, type, problem."""
        import pandas as pd
        from pydicom.datadict import tag_for_keyword

        from gantry_node.deid.profile import iod_types

        sop_classes, iods = iod_types()
        problems = []
        for row in self._ok_rows():
            original = _read_header(row["source"])
            current = _read_header(self.final_path(row)) if row["output"] else original
            iod = sop_classes.get(row["sop_class"] or "")
            if iod is None:
                problems.append({"instance_id": row["id"], "keyword": "SOPClassUID", "type": "",
                                 "problem": "SOP class not in the IOD tables"})
                continue
            for keyword, kind in sorted(iods.get(iod, {}).items()):
                tag = tag_for_keyword(keyword) if "/" not in keyword else None
                if tag is None or kind not in ("1", "2") or tag == 0x7FE00010:
                    continue
                if tag not in current:
                    if tag in original:
                        problems.append({"instance_id": row["id"], "keyword": keyword, "type": kind,
                                         "problem": f"Type {kind} attribute removed"})
                elif kind == "1" and current[tag].is_empty:
                    problems.append({"instance_id": row["id"], "keyword": keyword, "type": kind,
                                     "problem": "Type 1 attribute empty"})
        return pd.DataFrame(problems, columns=["instance_id", "keyword", "type", "problem"])

    # -- 8. export, analytics, report (offline/export.py, offline/report.py) -------------------
    def export(self, folder: str | Path, safe: bool = True, subset: Any = None, *, progress: bool = True):
        """Write the de-identified instances to `folder` (STUDY/SERIES/INSTANCE.dcm by
        pseudonymous UIDs). With safe=True only instances that pass verification now; the
        report lists what was held back and why. `subset`: a DataFrame from export_dataframe,
        a list of UIDs (study, series or instance; original or pseudonymous) or a pandas query
        string over export_dataframe()."""
        from gantry_node.offline.export import export

        return export(self, Path(folder), safe, subset, progress)

    export_data = export

    def export_dataframe(self, expand_metadata: bool = True):
        """One row per catalogued instance (no pixels read): pseudonymous identifiers once
        de-identified, InstanceCount per series, device, geometry, acquisition, sizes."""
        from gantry_node.offline.export import dataframe

        return dataframe(self, expand_metadata)

    def export_to_parquet(self, path: str | Path, row_group: int = 10_000) -> Path:
        """export_dataframe() as Parquet, written in row groups (memory bounded by a group)."""
        from gantry_node.offline.export import to_parquet

        return to_parquet(self, Path(path), row_group)

    def generate_report(self, path: str | Path) -> Path:
        """The compliance report (Markdown) for the privacy officer; no PHI in it."""
        from gantry_node.offline.report import write_report

        return write_report(self, Path(path))

    def audit_trail_sha256(self) -> str:
        """SHA-256 over the audit table, one canonical JSON line per row in id order."""
        digest = hashlib.sha256()
        for row in self.catalogue.audit_rows():
            digest.update(json.dumps(row, sort_keys=True).encode() + b"\n")
        return digest.hexdigest()

    # -- persistence -------------------------------------------------------------------------
    def save(self) -> Session:
        """Make everything durable: the stored outputs are fsynced, the database checkpointed."""
        if self.folder.exists():
            for path in self.folder.rglob("*.dcm"):
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        self.catalogue.checkpoint()
        self.catalogue.audit("save", "saved", instances=self.catalogue.count("status = 'ok'"))
        return self

    def close(self) -> None:
        """Close the database. Deletes nothing."""
        self.catalogue.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Session({str(self.path)!r}: {self.catalogue.count('status = ' + repr('ok'))} instances, "
                f"{self.catalogue.count('output is not null')} de-identified)")


def _read_header(path: str | Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings may quote values
        return pydicom.dcmread(path, stop_before_pixels=True)


def _bytes_file(data: bytes):
    import io

    return io.BytesIO(data)


def _bar(desc: str, enabled: bool):
    def wrap(items: Iterable, total: int) -> Iterable:
        if not enabled:
            return items
        from tqdm import tqdm

        return tqdm(items, total=total, desc=desc, unit="instance", disable=None, leave=False)

    return wrap
