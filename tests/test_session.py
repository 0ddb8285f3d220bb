"""`gantry_node.Session`: the offline front door, over the same pipeline as the node."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from gantry_node import Session
from gantry_node.deid import SecretError

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


def test_full_curation_flow(tmp_path, folder, secret_file):
    with Session(secret_file, workdir=tmp_path / "work") as s:
        s.ingest(folder)
        devices = s.examine()
        assert set(devices["Modality"]) == {"CT", "MR"} and devices["instances"].sum() == 2
        assert [i.source.name for i in s.unreadable] == ["notes.txt"]

        s.configure(options={"retain_patient_characteristics": True}, overrides={"SeriesDescription": "keep"})
        audit = s.audit_dataframe()
        assert {"file", "path", "keyword", "action"} <= set(audit.columns)
        assert "value" not in audit.columns
        assert (audit["keyword"] == "PatientID").sum() == 2

        s.anonymize()
        assert s.verify() == {}
        exported = s.export(tmp_path / "out")
        assert len(exported) == 2 and all(p.exists() for p in exported)

        cohort = s.cohort_dataframe()
        assert len(cohort) == 2
        assert set(cohort["Modality"]) == {"CT", "MR"}
        assert cohort["PatientSex"].notna().all()  # kept under Retain Patient Characteristics
        assert all(uid.startswith("2.25.") for uid in cohort["SOPInstanceUID"])
        parquet = s.export_parquet(tmp_path / "cohort.parquet")
        assert pd.read_parquet(parquet)["SOPInstanceUID"].tolist() == cohort["SOPInstanceUID"].tolist()

        report = s.compliance_report(tmp_path / "report.md")
        assert "113108 Retain Patient Characteristics Option" in report
        assert "- written: 2" in report and "- unreadable: 1" in report
        text = (tmp_path / "report.md").read_text()
        for phi in ("CompressedSamples^CT1", "1CT1", "MR1"):
            assert phi not in text
    assert not (tmp_path / "work").exists()


def test_session_needs_a_secret(tmp_path):
    with pytest.raises(ValueError, match="site secret is required"):
        Session()
    with pytest.raises(SecretError):
        Session(tmp_path / "missing")


def test_session_and_cli_give_the_same_output(tmp_path, folder, secret_file, run_cli):
    run_cli("deid", folder, tmp_path / "cli", "--secret-file", secret_file, "--no-progress")
    with Session(secret_file) as s:
        s.ingest(folder).anonymize()
        s.export(tmp_path / "lib")
    cli = {p.relative_to(tmp_path / "cli"): p.read_bytes() for p in (tmp_path / "cli").rglob("*.dcm")}
    lib = {p.relative_to(tmp_path / "lib"): p.read_bytes() for p in (tmp_path / "lib").rglob("*.dcm")}
    assert cli == lib and len(cli) == 2
