"""The workflow of issue 16, typed as its users will type it, on a synthetic cohort with planted
PHI; then a new process reopens the session and exports the same bytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import cli_env
from tests.support.cohort import PLANTED, TEXT_REGION, fill_in_config, make_cohort
from tests.support.seal import recipient


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.dcm"))}


REOPEN = """
import json, sys
import gantry_node as gantry
session = gantry.Session("gantry.db")
report = session.export(sys.argv[1], safe=True)
df = session.export_dataframe()
print(json.dumps({"patients": len(session.patients), "devices": len(session.devices),
                  "written": len(report.written), "held_back": sorted(report.held_back),
                  "pixel_states": sorted(str(s) for s in df.PixelState), "audit": bool(session.audit())}))
"""


@pytest.fixture
def workflow(tmp_path, monkeypatch):
    """Run the issue's code block literally in tmp_path; returns the cohort's roles."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GANTRY_SECRET_FILE", raising=False)
    roles = make_cohort(tmp_path / "raw_dicom_data")
    _, cert = recipient().write(tmp_path, "broker")
    assert cert.name == "broker-cert.pem"

    import gantry_node as gantry
    session = gantry.Session("gantry.db")          # opens or creates; resumes what save() left
    session.import_folder("./raw_dicom_data")      # alias: ingest
    session.inventory()                            # alias: examine — devices by manufacturer, model, serial
    findings = session.scan_for_phi()              # PhiFinding records; findings.to_dataframe()
    session.save_analysis(findings)
    session.enable_reversible_anonymization("broker-cert.pem")
    session.preserve_identities(findings)          # alias: backup_identities
    session.apply_remediation(findings)            # alias: anonymize_metadata
    session.scaffold_config("privacy_config.yaml") # alias: setup_config — unified: PHI tags + machine ROIs
    fill_in_config(Path("privacy_config.yaml"))    # (the user's edit: the scaffold's regions are to fill in)
    session.load_config("privacy_config.yaml")
    session.execute_config()                       # alias: redact_pixels
    if session.audit():                            # residual findings on the MODIFIED cohort; falsy when clean
        ...
    df = session.export_dataframe(expand_metadata=True)
    session.export("export_thick_cts", subset=df[(df.Modality == "CT") & (df.SliceThickness.astype(float) > 2.5)])
    session.export("./clean", safe=True)           # alias: export_data
    session.export_to_parquet("cohort.parquet")
    session.generate_report("compliance_report.md")
    session.save()
    session.close()
    return roles


def test_the_issue_workflow_literally(tmp_path, workflow):
    clean = tree(tmp_path / "clean")
    # every instance but the ultrasound from the device without a rule
    assert len(clean) == 8
    for name, data in clean.items():
        for value in PLANTED:
            assert value.encode() not in data, f"{value} in {name}"
        ds = pydicom.dcmread(tmp_path / "clean" / name)
        assert ds.PatientIdentityRemoved == "YES" and "EncryptedAttributesSequence" in ds
    held = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (tmp_path / "clean").rglob("*")
            if p.is_file()}
    assert not held & set(sum(workflow.values(), []))  # no original UID either

    thick = tree(tmp_path / "export_thick_cts")
    assert len(thick) == 2 and all(clean[k] == v for k, v in thick.items())

    report = (tmp_path / "compliance_report.md").read_text()
    assert "**PASS**" in report
    assert "no machine rule for the device): 1" in report  # held back, and said so
    assert "Pixels redacted by rule device-" in report and "SHA-256 of the audit trail" in report
    for value in PLANTED:
        assert value not in report
    assert list((tmp_path / "compliance_report_previews").glob("*.png"))
    assert list((tmp_path / "privacy_config_previews").glob("*.png"))

    import pandas as pd
    parquet = pd.read_parquet(tmp_path / "cohort.parquet")
    assert len(parquet) == 9 and set(parquet.Modality) == {"CT", "MR", "US"}
    assert parquet.InstanceCount[parquet.SliceThickness == 5.0].tolist() == [2, 2, 2, 2]  # thick CT and MR


def test_a_new_process_resumes_and_exports_the_same_bytes(tmp_path, workflow):
    env = cli_env()
    env["GANTRY_LOG_FILE"] = str(tmp_path / "session.log")
    env["GANTRY_LOG_LEVEL"] = "INFO"
    proc = subprocess.run([sys.executable, "-c", REOPEN, "again"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout.strip().splitlines()[-1])
    assert state["patients"] == 2 and state["devices"] == 4 and state["written"] == 8
    assert len(state["held_back"]) == 1 and state["audit"] is True  # the no-rule ultrasound's burned-in text
    assert state["pixel_states"].count("redacted") == 1
    assert tree(tmp_path / "again") == tree(tmp_path / "clean")
    log = (tmp_path / "session.log").read_text()
    assert [json.loads(line)["event"].split()[0] for line in log.splitlines()]  # JSON lines
    for value in PLANTED:
        assert value not in log


def test_the_pixel_redaction_survives_reopening_in_a_new_process(tmp_path, workflow):
    proc = subprocess.run([sys.executable, "-c", REOPEN, "again"], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (us,) = [p for p in (tmp_path / "again").rglob("*.dcm") if pydicom.dcmread(p).Modality == "US"]
    ds = pydicom.dcmread(us)
    x, y, w, h = TEXT_REGION
    assert not np.any(ds.pixel_array[y:y + h, x:x + w])  # blanked (the text was there: see test below)
    assert ds.BurnedInAnnotation == "NO"
    original = pydicom.dcmread(tmp_path / "raw_dicom_data" / "us_rule.dcm")
    assert np.any(original.pixel_array[y:y + h, x:x + w])
    np.testing.assert_array_equal(ds.pixel_array[200:], original.pixel_array[200:])  # the rest untouched
