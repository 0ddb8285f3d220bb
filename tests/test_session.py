"""`gantry_node.Session`: the offline front door, over the same pipeline as the node."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from gantry_node import Session
from gantry_node.engine.deid import SecretError

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
MR_SMALL = Path(get_testdata_file("MR_small.dcm"))


@pytest.fixture
def folder(tmp_path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(CT_SMALL, src / "ct.dcm")
    shutil.copy(MR_SMALL, src / "mr.dcm")
    (src / "notes.txt").write_text("not an image")
    return src


@pytest.fixture
def policy_file(tmp_path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text("options: {retain_patient_characteristics: true}\noverrides: {SeriesDescription: keep}\n")
    return path


def test_full_curation_flow(tmp_path, folder, secret_file, policy_file):
    with Session(tmp_path / "gantry.db", secret_file=secret_file, policy=policy_file) as s:
        report = s.ingest(folder)
        devices = s.examine()
        assert devices["instances"].sum() == 2 and set(", ".join(devices["modalities"]).split(", ")) == {"CT", "MR"}
        assert [(Path(p).name, status) for p, status, _ in report.skipped] == [("notes.txt", "not-dicom")]

        audit = s.scan_for_phi().to_dataframe()
        assert {"instance_id", "path", "field_name", "action"} <= set(audit.columns)
        assert "value" not in audit.columns
        assert (audit["field_name"] == "PatientID").sum() == 2

        s.apply_remediation()
        assert not s.audit()
        exported = s.export(tmp_path / "out").written
        assert len(exported) == 2 and all(p.exists() for p in exported)

        cohort = s.export_dataframe()
        assert len(cohort) == 2
        assert set(cohort["Modality"]) == {"CT", "MR"}
        assert cohort["PatientSex"].notna().all()  # kept under Retain Patient Characteristics
        assert all(uid.startswith("2.25.") for uid in cohort["SOPInstanceUID"])
        parquet = s.export_to_parquet(tmp_path / "cohort.parquet")
        assert pd.read_parquet(parquet)["SOPInstanceUID"].tolist() == cohort["SOPInstanceUID"].tolist()

        s.generate_report(tmp_path / "report.md")
        text = (tmp_path / "report.md").read_text()
        assert "113108 Retain Patient Characteristics Option" in text
        assert "**PASS**" in text and "- Instances de-identified: 2" in text and "1 not DICOM" in text
        for phi in ("CompressedSamples^CT1", "1CT1", "MR1"):
            assert phi not in text
    assert (tmp_path / "in" / "ct.dcm").exists()  # closing deletes nothing


def test_session_needs_a_readable_secret(tmp_path):
    with pytest.raises(SecretError, match="does not exist"):
        Session(tmp_path / "gantry.db", secret_file=tmp_path / "missing")


def test_session_and_cli_give_the_same_output(tmp_path, folder, secret_file, run_cli):
    run_cli("deid", folder, tmp_path / "cli", "--secret-file", secret_file, "--no-progress")
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s:
        s.ingest(folder)
        s.apply_remediation()
        s.export(tmp_path / "lib")
    cli = {p.relative_to(tmp_path / "cli"): p.read_bytes() for p in (tmp_path / "cli").rglob("*.dcm")}
    lib = {p.relative_to(tmp_path / "lib"): p.read_bytes() for p in (tmp_path / "lib").rglob("*.dcm")}
    assert cli == lib and len(cli) == 2
