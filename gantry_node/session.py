"""`Session`: the library front door for curating a folder offline.

    from gantry_node import Session

    s = Session(secret_file="site.secret")
    s.ingest("incoming/")            # catalogue the files (headers only)
    s.examine()                      # devices and modalities, as a DataFrame
    s.configure(options={"retain_patient_characteristics": True})
    s.audit_dataframe()              # what the policy will change, and suspicious kept text
    s.anonymize()                    # the node's pipeline, into the session's staging area
    s.verify()                       # re-verify every staged instance
    s.export("clean/")               # copy the verified instances out
    s.compliance_report("report.md") # for the privacy officer; no PHI values in it
    s.cohort_dataframe().to_parquet("cohort.parquet")

Everything runs through `gantry_node.pipeline.process`, the same engine as the network node.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gantry_node.deid import (
    Finding,
    Identity,
    Keys,
    Policy,
    default_policy,
    findings_dataframe,
    policy_from_mapping,
    scan,
    verify,
)
from gantry_node.deid.markers import method_codes
from gantry_node.dicomio import BadInput, read_instance, write_atomic
from gantry_node.folder import FileOutcome, iter_files, process_file
from gantry_node.library_warnings import Problem, instance_problems
from gantry_node.pipeline import Engine
from gantry_node.seal import SealingConfig, load_certificate, load_private_key, parse_sealing_section, recover
from gantry_node.settings_files import load_keys, load_policy
from gantry_node.version import __version__

# Header attributes catalogued at ingest (device and geometry; the identity stays in the file).
CATALOGUE = ("Modality", "SOPClassUID", "Manufacturer", "ManufacturerModelName", "Rows", "Columns",
             "BurnedInAnnotation", "NumberOfFrames")
# What a researcher needs from each clean instance, for the cohort table.
COHORT = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality",
          "StudyDate", "SeriesNumber", "InstanceNumber", "BodyPartExamined", "Manufacturer",
          "ManufacturerModelName", "Rows", "Columns", "NumberOfFrames", "PixelSpacing", "SliceThickness",
          "SpacingBetweenSlices", "ImagePositionPatient", "ImageOrientationPatient", "KVP", "RepetitionTime",
          "EchoTime", "MagneticFieldStrength", "PatientAge", "PatientSex", "LongitudinalTemporalInformationModified")


@dataclass
class Instance:
    """One ingested file and what happened to it. `identity` stays in memory only."""

    source: Path
    header: dict[str, Any] = field(default_factory=dict)
    problem: str = ""  # why it cannot be processed (bad input), no PHI
    outcome: FileOutcome | None = None
    identity: Identity | None = field(default=None, repr=False)
    changes: Counter = field(default_factory=Counter)
    verify_findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # pydicom's warnings, by tag (no values)


@dataclass
class IdentityBackup:
    """What preserve_identities() guarantees: who can recover, and what the seal does not cover."""

    recipients: list[str]  # certificate subjects
    algorithm: str
    not_covered: list[Finding] = field(default_factory=list)  # kept text that looks like PHI
    unsealed: list[Path] = field(default_factory=list)  # anonymized before sealing was on


class Session:
    def __init__(
        self,
        secret_file: str | Path | None = None,
        *,
        secret: bytes | None = None,
        policy: Policy | str | Path | None = None,
        workdir: str | Path | None = None,
    ) -> None:
        if (secret is None) == (secret_file is None):
            raise ValueError("give exactly one of secret_file= or secret= (the site secret is required)")
        self.keys = Keys(secret) if secret is not None else load_keys(secret_file)
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="gantry-session-"))
        self.staging = self.workdir / "clean"
        self.instances: list[Instance] = []
        self.sealer = None  # set by enable_reversible_anonymization
        self.sealing: SealingConfig | None = None
        # Burned-in pixels are handled from the start (shipped rules, unknown devices held
        # back, OCR gate): fail closed. `load_config` replaces the configuration.
        self.pixel_config = None
        self.pixel_stage = None
        self.load_config(None)

    # -- the engine ------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        return Engine(self.policy, self.keys, sealer=self.sealer, pixel_stage=self.pixel_stage)

    def configure(
        self,
        options: Mapping[str, bool] | None = None,
        overrides: Mapping[str, Any] | None = None,
        date_shift_days: tuple[int, int] | None = None,
    ) -> Policy:
        """Change the policy: options on/off, site overrides, the date-offset range."""
        doc: dict[str, Any] = {"options": {o: True for o in self.policy.options}}
        doc["options"].update({o: False for o in default_policy().options if o not in self.policy.options})
        doc["options"].update(options or {})
        doc["date_shift_days"] = list(date_shift_days or self.policy.date_shift_days)
        policy = policy_from_mapping(doc, "configure")
        merged = dict(self.policy.overrides)
        if overrides:
            merged.update(policy_from_mapping({"overrides": dict(overrides)}, "configure").overrides)
        self.policy = replace(policy, overrides=merged,
                              pseudonymize_patient_name=self.policy.pseudonymize_patient_name,
                              references=self.policy.references)
        return self.policy

    def load_policy(self, path: str | Path) -> Policy:
        self.policy = load_policy(path)
        return self.policy

    # -- ingest and examine ----------------------------------------------------------------
    def ingest(self, source: str | Path) -> Session:
        """Catalogue every file under `source` (headers only; bad files are kept with a reason)."""
        for path in iter_files(Path(source)):
            inst = Instance(path)
            try:
                with self._reading(inst, path):
                    ds = pydicom.dcmread(path, stop_before_pixels=True)
                    if not ds.get("SOPInstanceUID"):
                        raise BadInput(path, "SOPInstanceUID is missing: not a composite instance")
                    inst.header = {k: _plain(ds.get(k)) for k in CATALOGUE}
            except Exception as exc:  # noqa: BLE001 -- a file we cannot read is reported, not fatal
                inst.problem = str(exc) if isinstance(exc, BadInput) else f"{path}: not readable as DICOM"
            self.instances.append(inst)
        return self

    def examine(self):
        """Devices and modalities seen: one row per (modality, manufacturer, model) with counts."""
        import pandas as pd

        rows = [i.header for i in self.instances if i.header]
        columns = ["Modality", "Manufacturer", "ManufacturerModelName", "instances", "burned_in_annotation"]
        if not rows:
            return pd.DataFrame(columns=columns)
        df = pd.DataFrame(rows).fillna("")
        df["burned_in"] = df["BurnedInAnnotation"].astype(str).str.upper().eq("YES")
        keys = ["Modality", "Manufacturer", "ManufacturerModelName"]
        out = df.groupby(keys, dropna=False).agg(instances=("SOPClassUID", "size"),
                                                  burned_in_annotation=("burned_in", "any"))
        return out.reset_index()[columns]

    @property
    def unreadable(self) -> list[Instance]:
        return [i for i in self.instances if i.problem]

    @property
    def problems(self) -> dict[Path, list[Problem]]:
        """What pydicom warned about in each file (an invalid UID, a text too long for its VR),
        by tag and kind; the values are never kept or shown."""
        return {i.source: list(i.problems) for i in self.instances if i.problems}

    # -- audit -----------------------------------------------------------------------------
    def audit(self) -> dict[Path, list[Finding]]:
        """What the policy will change in each instance, and identifying text it would keep."""
        out = {}
        for inst in self._readable():
            try:
                with self._reading(inst, inst.source):
                    out[inst.source] = scan(read_instance(inst.source), self.policy, self.keys)
            except BadInput as exc:
                inst.problem = str(exc)
        return out

    def audit_dataframe(self, reveal: bool = False):
        import pandas as pd

        frames = []
        for source, findings in self.audit().items():
            df = findings_dataframe(findings, reveal)
            df.insert(0, "file", str(source))
            frames.append(df)
        return pd.concat(frames, ignore_index=True) if frames else findings_dataframe([], reveal)

    # -- burned-in pixels (gantry_node.pixels) ----------------------------------------------
    def setup_config(self, path: str | Path | None = None) -> str:
        """Machine-rule scaffold (YAML) with one entry per ingested device, regions to fill in;
        written to `path` when given. Load the filled-in file with `load_config`."""
        from gantry_node.pixels.api import scaffold_yaml

        text, _ = scaffold_yaml((inst.header for inst in self.instances if inst.header), self.keys)
        if path is not None:
            write_atomic(text.encode("utf-8"), Path(path))
        return text

    scaffold_config = setup_config

    def load_config(self, path: str | Path | None = None):
        """Load a pixel configuration (a node config with `pixels:`, or a rules file; None: the
        shipped defaults) and redact pixels in every later `anonymize`. Returns the PixelConfig."""
        from gantry_node.pixels.api import load_pixel_config
        from gantry_node.pixels.stage import make_pixel_stage

        self.pixel_config = load_pixel_config(path)
        self.pixel_stage = make_pixel_stage(self.pixel_config, self.keys)
        return self.pixel_config

    def redact_pixels(self) -> Session:
        """Anonymize with burned-in pixel redaction and the OCR gate (the shipped defaults
        unless `load_config` was called): the same pipeline as `anonymize`, which always runs
        the pixel stage; kept as the Gantry API's name for this step."""
        if self.pixel_stage is None:
            self.load_config(None)
        return self.anonymize()

    execute_config = redact_pixels

    # -- anonymize, verify, export ---------------------------------------------------------
    def anonymize(self) -> Session:
        """Run the pipeline over every readable instance into the staging area."""
        engine = self.engine
        written: dict[Path, Path] = {}
        for inst in self._readable():
            outcome, clean = process_file(inst.source, engine, self.staging, written)
            inst.outcome = outcome
            _merge(inst, outcome.problems)
            if outcome.status in ("corrupt", "not-dicom"):
                inst.problem = outcome.detail
            if clean is not None:
                inst.changes = Counter(c.action for c in clean.changes)
                inst.identity = clean.identity
        return self

    def verify(self) -> dict[Path, list[Finding]]:
        """Re-read and verify every staged instance; any that fails is withdrawn from staging."""
        failures = {}
        for inst in self._written():
            with self._reading(inst, inst.outcome.output):
                ds = read_instance(inst.outcome.output)
            inst.verify_findings = verify(ds, self.policy, inst.identity)
            if inst.verify_findings:
                inst.outcome.output.unlink(missing_ok=True)
                inst.outcome = replace(inst.outcome, status="quarantined", detail="failed re-verification")
                failures[inst.source] = inst.verify_findings
        return failures

    def export(self, out_dir: str | Path) -> list[Path]:
        """Copy every verified staged instance to `out_dir` (same STUDY/SERIES/INSTANCE layout)."""
        out_dir = Path(out_dir)
        exported = []
        for inst in self._written():
            rel = inst.outcome.output.relative_to(self.staging)
            exported.append(write_atomic(inst.outcome.output.read_bytes(), out_dir / rel))
        return exported

    # -- reversible de-identification (PS3.15 E.1.2) -------------------------------------------
    def enable_reversible_anonymization(
        self, cert_path: str | Path | list[str | Path], algorithm: str = "aes256"
    ) -> Session:
        """Seal the original values of everything anonymize() removes or replaces into each
        instance (Encrypted Attributes Sequence, CMS to the certificate(s)); only the holder of a
        recipient's private key can recover them. Refuses an unreadable, expired or non-RSA
        certificate."""
        paths = cert_path if isinstance(cert_path, list | tuple) else [cert_path]
        self.sealing = parse_sealing_section(list(paths), {"algorithm": algorithm}, "enable_reversible_anonymization")
        self.sealer = self.sealing.sealer()
        return self

    def preserve_identities(self, findings: Any = None) -> IdentityBackup:
        """Make sure the identity is backed up before anything is anonymized: here the backup is
        the sealed Encrypted Attributes Sequence that anonymize() writes into every instance, so
        this requires enable_reversible_anonymization() first.

        `findings` (a list of Finding, or the dict audit() returns) is checked against what the
        seal covers: the seal holds every attribute the policy changes; identifying text the
        policy keeps is listed in `not_covered` (change the policy to clean it). Instances
        already anonymized without sealing are listed in `unsealed` (run anonymize() again)."""
        if self.sealer is None or self.sealing is None:
            raise ValueError("preserve_identities needs a recipient certificate: call "
                             "enable_reversible_anonymization(cert_path) first")
        items = [f for fs in findings.values() for f in fs] if isinstance(findings, Mapping) else list(findings or [])
        unsealed = []
        for i in self._written():
            with self._reading(i, i.outcome.output):
                if "EncryptedAttributesSequence" not in pydicom.dcmread(i.outcome.output, stop_before_pixels=True):
                    unsealed.append(i.source)
        return IdentityBackup(
            recipients=[c.subject.rfc4514_string() for c in self.sealing.recipients],
            algorithm=self.sealing.algorithm,
            not_covered=[f for f in items if f.action.startswith("keep")],
            unsealed=unsealed,
        )

    backup_identities = preserve_identities

    def recover_patient_identity(
        self, path_or_dataset: str | Path | Dataset, key_path: str | Path, cert_path: str | Path | None = None
    ) -> Dataset:
        """The re-identified copy of a sealed instance (a file or a Dataset): original values
        back, Patient Identity Removed NO, De-identification Method removed. Needs the honest
        broker's private key; raises ValueError (SealError, CertificateError) when it cannot."""
        ds = path_or_dataset if isinstance(path_or_dataset, Dataset) else read_instance(path_or_dataset)
        key = load_private_key(key_path)
        cert = load_certificate(cert_path) if cert_path is not None else None
        return recover(ds, key, cert).dataset

    # -- reports ---------------------------------------------------------------------------
    def cohort_dataframe(self):
        """One row per clean instance: pseudonymous identifiers, geometry, acquisition."""
        import pandas as pd

        rows = []
        for inst in self._written():
            with self._reading(inst, inst.outcome.output):
                ds = pydicom.dcmread(inst.outcome.output, stop_before_pixels=True)
                rows.append({k: _plain(ds.get(k)) for k in COHORT} | {"path": str(inst.outcome.output)})
        return pd.DataFrame(rows, columns=[*COHORT, "path"])

    def export_parquet(self, path: str | Path) -> Path:
        path = Path(path)
        self.cohort_dataframe().to_parquet(path, index=False)
        return path

    def compliance_report(self, path: str | Path | None = None) -> str:
        """A Markdown report for the privacy officer: policy, outcomes, verification. No PHI."""
        statuses = Counter(i.outcome.status if i.outcome else ("unreadable" if i.problem else "not processed")
                           for i in self.instances)
        actions: Counter = Counter()
        for i in self.instances:
            actions.update(i.changes)
        held = Counter(i.outcome.detail.split(":")[0] for i in self.instances
                       if i.outcome and i.outcome.status == "quarantined")
        problems = Counter(str(p) for i in self.instances for p in i.problems)
        lines = [
            "# De-identification compliance report",
            "",
            f"Tool: gantry-node {__version__}. Standard: DICOM PS3.15 Annex E (2023b).",
            "",
            "## Policy",
            "",
            *[f"- {code} {meaning}" for code, meaning in method_codes(self.policy)],
            f"- Longitudinal temporal information: {self.policy.date_handling}"
            + (f" (per-patient offset in {list(self.policy.date_shift_days)} days)"
               if self.policy.date_handling == "MODIFIED" else ""),
            f"- Site overrides: {len(self.policy.overrides)}",
            f"- Reversible identity sealing (PS3.15 E.1.2): {'on' if self.sealer else 'off'}",
            f"- Burned-in pixel handling: {'on' if self.pixel_stage else 'off'}",
            "- Pseudonyms: keyed HMAC-SHA256 of the original values (site secret not included here)",
            "",
            "## Outcome",
            "",
            f"- Files ingested: {len(self.instances)}",
            *[f"- {status}: {n}" for status, n in sorted(statuses.items())],
            "",
            "## Changes applied (attribute count by action)",
            "",
            *[f"- {action}: {n}" for action, n in sorted(actions.items())],
            "",
            "## Held back (not exported)",
            "",
            *([f"- {reason}: {n}" for reason, n in sorted(held.items())] or ["- none"]),
            "",
            "## Invalid values pydicom reported (by tag; values withheld)",
            "",
            *([f"- {problem}: {n} file{'s' if n != 1 else ''}" for problem, n in sorted(problems.items())]
              or ["- none"]),
            "",
            "## Verification",
            "",
            f"- Instances verified clean: {len(self._written())}",
            "- Each exported instance was re-scanned: nothing the policy removes remains, and the original name, "
            "IDs, birth date and UIDs occur nowhere in its encoded bytes.",
            "",
        ]
        text = "\n".join(lines)
        if path is not None:
            write_atomic(text.encode(), Path(path), 0o644)
        return text

    # -- housekeeping ----------------------------------------------------------------------
    def close(self) -> None:
        """Delete the staging area (it holds clean data only, but it is the session's)."""
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _reading(self, inst: Instance, path: Path) -> Iterator[None]:
        """pydicom's warnings while `path` is read become `inst.problems`, never output."""
        try:
            with instance_problems(path) as problems:
                yield
        finally:
            _merge(inst, problems)

    def _readable(self) -> list[Instance]:
        return [i for i in self.instances if not i.problem]

    def _written(self) -> list[Instance]:
        return [i for i in self.instances if i.outcome and i.outcome.status == "written"]


def _merge(inst: Instance, problems) -> None:
    inst.problems.extend(p for p in problems if p not in inst.problems)


def _plain(value):
    """A header value as a plain Python value for a DataFrame."""
    if value is None or isinstance(value, int | float | str):
        return value
    if isinstance(value, Dataset):
        return None
    if isinstance(value, MultiValue):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return None
    return str(value)
