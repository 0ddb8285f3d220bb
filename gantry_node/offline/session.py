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

The stages are the node's (gantry_node.engine.pipeline): the same inputs, secret and policy give
byte-identical outputs to `gantry-node deid` and the node's worker.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydicom.dataset import Dataset

from gantry_node.engine.deid import Keys, Policy, SecretError, new_secret, policy_from_mapping
from gantry_node.engine.library_warnings import Problem, silenced
from gantry_node.engine.pipeline import Engine
from gantry_node.io.part10 import read_instance
from gantry_node.io.settings import load_keys, load_policy
from gantry_node.offline import config as cfg
from gantry_node.offline import pixels_step, steps, verification
from gantry_node.offline.catalogue import Catalogue, is_sqlite_file
from gantry_node.offline.cohort import Device, Patient, build_devices, build_graph
from gantry_node.offline.common import SessionError, StepReport, progress_bar
from gantry_node.offline.findings import Findings, PhiFinding, ScanFindings
from gantry_node.offline.importer import catalogue_files, iter_files
from gantry_node.offline.logs import configure_from_env, log

SECRET_ENV = "GANTRY_SECRET_FILE"
IMPORT_BATCH = 10_000  # files catalogued and inserted at a time


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


T = TypeVar("T")


def _quiet(step: Callable[..., T]) -> Callable[..., T]:
    """A step lets no pydicom warning or log record out (they quote values): problems are
    reported by tag instead (`Session.problems`, the report). Forked workers inherit it."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> T:
        with silenced():
            return step(*args, **kwargs)

    return run


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
            self.set_policy(policy if isinstance(policy, Policy) else load_policy(policy))
        elif stored_policy is not None:
            self.policy = policy_from_mapping(stored_policy, f"{path}: policy")
        else:
            self.set_policy(load_policy(None))
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

    def set_policy(self, policy: Policy) -> None:
        """Use `policy` from now on (kept in the database); instances de-identified under
        another one are held back until apply_remediation runs again."""
        self.policy = policy
        self.catalogue.set_meta("policy", cfg.policy_to_mapping(policy))

    def _restore_pixel_config(self) -> None:
        stored = self.catalogue.get_meta("pixel_config")
        if stored:
            _, self.pixel_config = cfg.parse_config_text(stored["text"], Path(stored["path"]))
            self.pixel_config_text, self.config_path = stored["text"], Path(stored["path"])
        else:
            from gantry_node.engine.pixels.config import parse_pixels_section

            self.pixel_config = parse_pixels_section(None)  # fail closed from the start: shipped rules

    @property
    def pixel_config_fp(self) -> str:
        return cfg.text_fingerprint(self.pixel_config_text)

    @property
    def engine(self) -> Engine:
        """The node's pipeline engine for this session's policy, secret and sealing."""
        from gantry_node.engine.pixels.stage import make_pixel_stage

        return Engine(self.policy, self.keys, sealer=self.sealer, pixel_stage=make_pixel_stage(self.pixel_config))

    def store_dir(self, kind: str) -> Path:
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
    @_quiet
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
        seen = {r["sop_uid"]: r["id"] for r in self.catalogue.instances("status = 'ok'")}
        report = ImportReport(already_known=len(paths) - len(new))
        statuses: Counter = Counter()
        bar = progress_bar("importing", progress)
        for start in range(0, len(new), IMPORT_BATCH):  # memory bounded by a batch of rows
            rows = catalogue_files(new[start:start + IMPORT_BATCH], bar, workers)
            for row in rows:
                if row["status"] == "ok":
                    if row["sop_uid"] in seen:
                        row.update(status="duplicate",
                                   problem=f"same SOP Instance UID as instance {seen[row['sop_uid']]}")
                    else:
                        seen[row["sop_uid"]] = -1
                if row["status"] == "ok":
                    report.catalogued += 1
                else:
                    report.skipped.append((row["source"], row["status"], row["problem"]))
            self.catalogue.add_instances(rows)
            statuses.update(r["status"] for r in rows)
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
    def problems(self) -> dict[str, list[Problem]]:
        """What pydicom warned about while each file was imported: by file, one
        `Problem(tag, keyword, kind)` per element (never the value; nothing is printed)."""
        out: dict[str, list[Problem]] = {}
        for row in self.catalogue.db.query("SELECT source, value_problems FROM instances "
                                           "WHERE value_problems IS NOT NULL AND value_problems != ''"):
            out[row["source"]] = [Problem(**p) for p in json.loads(row["value_problems"])]
        return out

    @property
    def devices(self) -> list[Device]:
        """Devices by (manufacturer, model, serial), most instances first."""
        return build_devices(self.catalogue.instances())

    @_quiet
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

    def ok_rows(self, where: str = "", params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return self.catalogue.instances("status = 'ok'" + (f" and ({where})" if where else ""), params)

    # -- 3. PHI scan -------------------------------------------------------------------------
    @_quiet
    def scan_for_phi(self, rules: Policy | str | Path | None = None, *, progress: bool = True,
                     workers: int | None = None) -> Findings:
        """What the policy (or the policy file `rules`) would change in every original
        instance, and identifying text it would keep. The findings stream into the session
        database without their values (memory does not grow with the cohort); a value is read
        again from its instance when the Findings are iterated or revealed."""
        policy = self.policy if rules is None else rules if isinstance(rules, Policy) else load_policy(rules)
        rows = self.ok_rows()
        sources = {r["id"]: r["source"] for r in rows}
        context = {"policy": policy, "keys": self.keys}
        scan, count, batch = self.catalogue.new_scan(), 0, []
        for found in steps.run_iter(steps.scan_one, list(sources.items()), context,
                                    progress_bar("scanning", progress), workers):
            batch += [{**f.row(), "seq": seq} for seq, f in enumerate(found)]
            if len(batch) >= 5000:
                self.catalogue.add_scan_findings(scan, batch)
                count, batch = count + len(batch), []
        self.catalogue.add_scan_findings(scan, batch)
        count += len(batch)

        def rescan(instance_id: int) -> list[PhiFinding]:
            return steps.run(steps.scan_one, [(instance_id, sources[instance_id])], context, None, 1)[0]

        findings = ScanFindings(self.catalogue, scan, len(rows), rescan)
        self.catalogue.audit("scan", "scanned", instances=len(rows), findings=count)
        log(logging.INFO, "scan done", instances=len(rows), findings=count)
        return findings

    def save_analysis(self, findings: Findings) -> int:
        """Persist the findings (without values) as a numbered analysis; returns its number."""
        if isinstance(findings, ScanFindings):  # database to database, no values read
            findings.analysis = self.catalogue.save_scan(findings.scan)
            saved = len(findings)
        else:
            rows = [{k: v for k, v in f.row().items()} for f in findings]
            findings.analysis = self.catalogue.save_findings(rows)
            saved = len(rows)
        self.catalogue.audit("analysis", "saved", analysis=findings.analysis, findings=saved)
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
        from gantry_node.engine.seal import parse_sealing_section

        sealing = parse_sealing_section(list(paths), {"algorithm": algorithm}, "enable_reversible_anonymization")
        self.sealing, self.sealer = sealing, sealing.sealer()

    @_quiet
    def preserve_identities(self, findings: Findings | Iterable[PhiFinding] | None = None) -> IdentityBackup:
        """Back up the identities before they are removed: instances already de-identified
        without a seal are de-identified again with it (a seal needs the originals); the rest
        are sealed by apply_remediation. `findings` are checked against what the seal covers:
        the seal holds every attribute the policy changes; identifying text the policy keeps
        is listed in `not_covered` (change the policy to clean it)."""
        if self.sealer is None or self.sealing is None:
            raise SessionError("preserve_identities needs a recipient certificate: call "
                               "enable_reversible_anonymization(cert_path) first")
        unsealed = [r["id"] for r in self.ok_rows("output is not null and sealed = 0")]
        if unsealed:
            self._remediate(self.ok_rows(f"id in ({','.join(map(str, unsealed))})"), "backup", progress=False)
        backup = IdentityBackup(
            recipients=[c.subject.rfc4514_string() for c in self.sealing.recipients],
            algorithm=self.sealing.algorithm,
            sealed=[r["id"] for r in self.ok_rows("output is not null and sealed = 1")],
            pending=[r["id"] for r in self.ok_rows("output is null")],
            not_covered=_kept(findings),
        )
        self.catalogue.audit("backup", "identities", sealed=len(backup.sealed), pending=len(backup.pending),
                             not_covered=len(backup.not_covered))
        return backup

    backup_identities = preserve_identities

    def recover_patient_identity(self, path_or_dataset: str | Path | Dataset, key_path: str | Path,
                                 cert_path: str | Path | None = None) -> Dataset:
        """The re-identified copy of a sealed instance: original values back. Needs the honest
        broker's private key."""
        from gantry_node.engine.seal import load_certificate, load_private_key, recover

        ds = path_or_dataset if isinstance(path_or_dataset, Dataset) else read_instance(path_or_dataset)
        cert = load_certificate(cert_path) if cert_path is not None else None
        return recover(ds, load_private_key(key_path), cert).dataset

    # -- 5. metadata -------------------------------------------------------------------------
    @_quiet
    def apply_remediation(self, findings: Findings | None = None, *, progress: bool = True,
                          workers: int | None = None) -> StepReport:
        """De-identify the metadata of every catalogued instance (the node's deidentify and
        seal stages; pixels untouched), into the session folder. Re-running redoes it (and
        invalidates pixel work done on the previous output). Findings whose action is "keep"
        are returned in `not_addressed`: the policy keeps them; add an override to change that."""
        report = self._remediate(self.ok_rows(), "remediate", progress, workers)
        report.not_addressed = _kept(findings)
        return report

    anonymize_metadata = apply_remediation

    def _remediate(self, rows: list[dict[str, Any]], step: str, progress: bool,
                   workers: int | None = None) -> StepReport:
        out_dir = self.store_dir("instances")
        context = {"engine": Engine(self.policy, self.keys, sealer=self.sealer), "folder": self.folder,
                   "policy_fp": cfg.policy_fingerprint(self.policy)}
        items = [(r["id"], r["source"], str(out_dir / f"{r['id']}.dcm")) for r in rows]
        results = steps.run(steps.remediate_one, items, context, progress_bar("de-identifying", progress), workers)
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

    # -- 6. configuration and pixels (offline/pixels_step.py) ----------------------------------
    @_quiet
    def scaffold_config(self, path: str | Path) -> Path:
        """Write the unified configuration: the policy in force and one machine rule per
        device of the inventory, regions to fill in; and a PNG of a sample image of each device
        in `<name>_previews/` (regions drawn once the file is loaded with load_config)."""
        return pixels_step.scaffold(self, Path(path))

    setup_config = scaffold_config

    @_quiet
    def load_config(self, path: str | Path) -> Session:
        """Load the unified configuration: its policy becomes the session's (instances
        de-identified under another policy must go through apply_remediation again) and its
        pixel rules are used by execute_config. Errors name the file and the key."""
        pixels_step.load(self, Path(path))
        return self

    @_quiet
    def execute_config(self, *, progress: bool = True) -> StepReport:
        """Redact burned-in pixels with the loaded machine rules (the node's pixel stage), on
        the de-identified instances the configuration concerns: those a rule with regions
        matches, and those that may carry burned-in text (these without a rule are held back;
        the OCR gate reads what is left). Metadata is not touched; other instances are left
        as they are."""
        return pixels_step.execute(self, progress=progress)

    redact_pixels = execute_config

    # -- 7. verification ---------------------------------------------------------------------
    def final_path(self, row: dict[str, Any]) -> Path | None:
        rel = row.get("pixel_output") or row.get("output")
        return self.folder / rel if rel else None

    def check_instance(self, row: dict[str, Any], matcher=None) -> list[PhiFinding]:
        """Why this instance must not leave ([] when it may): the verify stage on its stored
        output, and whether every step has been done under the current settings."""
        return verification.check_instance(self, row, matcher)

    @_quiet
    def audit(self, *, progress: bool = True) -> Findings:
        """Residual findings on the MODIFIED cohort (falsy when clean): the verify stage on each
        stored output, and every instance held back or not yet through every step, with why."""
        return verification.audit(self, progress=progress)

    @_quiet
    def validate(self):
        """Type 1 and Type 2 attributes the instances' current state lost or holds empty (a
        DataFrame: instance_id, keyword, type, problem); see verification.validate."""
        return verification.validate(self)

    # -- 8. export, analytics, report (offline/export.py, offline/report.py) -------------------
    @_quiet
    def export(self, folder: str | Path, safe: bool = True, subset: Any = None, *, progress: bool = True):
        """Write the de-identified instances to `folder` (STUDY/SERIES/INSTANCE.dcm by
        pseudonymous UIDs). With safe=True only instances that pass verification now; the
        report lists what was held back and why. `subset`: a DataFrame from export_dataframe,
        a list of UIDs (study, series or instance; original or pseudonymous) or a pandas query
        string over export_dataframe()."""
        from gantry_node.offline.export import export

        return export(self, Path(folder), safe, subset, progress)

    export_data = export

    @_quiet
    def export_dataframe(self, expand_metadata: bool = True):
        """One row per catalogued instance (no pixels read): pseudonymous identifiers once
        de-identified, InstanceCount per series, device, geometry, acquisition, sizes."""
        from gantry_node.offline.export import dataframe

        return dataframe(self, expand_metadata)

    @_quiet
    def export_to_parquet(self, path: str | Path, row_group: int = 10_000) -> Path:
        """export_dataframe() as Parquet, written in row groups (memory bounded by a group)."""
        from gantry_node.offline.export import to_parquet

        return to_parquet(self, Path(path), row_group)

    @_quiet
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


def _kept(findings: Findings | Iterable[PhiFinding] | None) -> list[PhiFinding]:
    """The findings the policy keeps (a scan's are read from the session database)."""
    if isinstance(findings, Findings):
        return findings.kept()
    return [f for f in (findings or []) if f.action.startswith("keep")]
