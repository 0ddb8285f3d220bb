"""import_folder, the cohort graph, devices, and the PHI scan's findings."""

from __future__ import annotations

import pytest

from gantry_node import Session
from gantry_node.offline import importer
from tests.support.cohort import NO_RULE_DEVICE, RULE_DEVICE, make_cohort


@pytest.fixture
def cohort(tmp_path):
    roles = make_cohort(tmp_path / "raw")
    return tmp_path / "raw", roles


@pytest.fixture
def session(tmp_path, secret_file, cohort):
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s:
        s.import_folder(cohort[0], progress=False)
        yield s


def test_import_reports_and_skips_what_it_cannot_use(tmp_path, secret_file, cohort):
    with Session(tmp_path / "s.db", secret_file=secret_file) as s:
        report = s.ingest(cohort[0])
        assert report.catalogued == 9
        reasons = {path.rsplit("/", 1)[-1]: (status, why) for path, status, why in report.skipped}
        assert reasons["notes.txt"] == ("not-dicom", "not a DICOM file (no DICM prefix or file meta)")
        assert reasons["truncated.dcm"][0] == "corrupt" and "(7FE0,0010)" in reasons["truncated.dcm"][1]
        again = s.import_folder(cohort[0])
        assert again.catalogued == 0 and again.already_known == 11


def test_the_process_pool_catalogues_the_same_rows(tmp_path, cohort, monkeypatch):
    paths = [str(p) for p in importer.iter_files(cohort[0])]
    serial = importer.catalogue_files(paths, workers=1)
    monkeypatch.setattr(importer, "PARALLEL_THRESHOLD", 1)
    assert importer.catalogue_files(paths, workers=2) == serial


def test_the_graph_patients_studies_series_instances(session, cohort):
    roles = cohort[1]
    patients = session.patients
    assert len(patients) == 2
    counts = sorted((len(p.studies), p.instance_count) for p in patients)
    assert counts == [(1, 3), (1, 6)]  # ROE: MR x2 + US; DOE: CT 3 + CT 2 + US
    jane = next(p for p in patients if p.instance_count == 6)
    (study,) = jane.studies
    assert study.study_date == "20240311"
    assert sorted((s.modality, s.instance_count) for s in study.series) == [("CT", 2), ("CT", 3), ("US", 1)]
    thin = next(s for s in study.series if s.instance_count == 3)
    assert sorted(i.sop_instance_uid for i in thin.instances) == sorted(roles["thin_ct"])
    inst = thin.instances[0]
    assert inst.SliceThickness == 2.5 and inst.rows == 64 and not inst.anonymized
    assert inst.pixels.shape == (1, 64, 64)  # read from disk now
    assert "MRN12345" not in repr(jane) and "DOE" not in repr(patients)

    session.apply_remediation(progress=False)
    after = session.patients
    assert {p.patient_id for p in after}.isdisjoint({"MRN12345", "MRN67890"})
    uids = [i.sop_instance_uid for p in after for st in p.studies for se in st.series for i in se.instances]
    assert all(u.startswith("2.25.") for u in uids) and len(uids) == 9


def test_devices_by_manufacturer_model_serial(session):
    devices = {(d.manufacturer, d.model, d.serial): d for d in session.devices}
    assert devices[RULE_DEVICE].instances == 1 and devices[RULE_DEVICE].burned_in_annotation
    assert devices[NO_RULE_DEVICE].modalities == ("US",)
    table = session.examine()
    assert list(table.columns[:3]) == ["Manufacturer", "ManufacturerModelName", "DeviceSerialNumber"]
    assert table["instances"].sum() == 9 and len(table) == 4


def test_findings_never_show_values_unless_asked(session):
    findings = session.scan_for_phi(progress=False)
    assert findings and len({f.instance_id for f in findings}) == 9
    names = [f for f in findings if f.field_name == "PatientName"]
    assert {f.entity_type for f in names} == {"Patient"} and {str(f.value) for f in names} >= {"DOE^JANE^Q"}
    for shown in (repr(findings), repr(names[0]), findings.to_dataframe().to_string()):
        assert "DOE" not in shown and "MRN12345" not in shown
    assert "value" not in findings.to_dataframe().columns
    assert "DOE^JANE^Q" in set(findings.to_dataframe(reveal=True)["value"])
    number = session.save_analysis(findings)
    saved = session.load_analysis(number)
    assert len(saved) == len(findings) and all(f.value is None for f in saved)
    assert [f.field_name for f in saved] == [f.field_name for f in findings]


def test_scan_with_a_policy_file(session, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("overrides:\n  PatientName: keep\n")
    default = [f for f in session.scan_for_phi(progress=False) if f.field_name == "PatientName"]
    assert len(default) == 9
    ruled = [f for f in session.scan_for_phi(rules, progress=False) if f.field_name == "PatientName"]
    # the rules file is the policy of this scan: its override is what the findings report
    assert {f.reason for f in ruled} == {"kept free text holding the patient's identity"}
    assert {f.reason for f in default} != {f.reason for f in ruled}


def test_scan_and_remediation_across_processes_match_one_process(tmp_path, secret_file, cohort, monkeypatch):
    from gantry_node.offline import steps

    results = []
    for name, workers in (("serial", 1), ("pool", 2)):
        if workers > 1:
            monkeypatch.setattr(steps, "PARALLEL_THRESHOLD", 1)
        with Session(tmp_path / f"{name}.db", secret_file=secret_file) as s:
            s.import_folder(cohort[0], progress=False)
            findings = s.scan_for_phi(progress=False, workers=workers)
            s.apply_remediation(progress=False, workers=workers)
            s.execute_config(progress=False)
            s.export(tmp_path / name, progress=False)
            results.append((findings.to_dataframe(reveal=True).to_dict("records"),
                            {str(p.relative_to(tmp_path / name)): p.read_bytes()
                             for p in (tmp_path / name).rglob("*.dcm")}))
    assert results[0] == results[1] and len(results[0][1]) == 7  # the ultrasounds: no rule loaded


def test_scan_findings_live_in_the_session_database_not_in_memory(session):
    findings = session.scan_for_phi(progress=False)
    stored = list(session.catalogue.db.query("select * from scan_findings where scan = ?", [findings.scan]))
    assert len(stored) == len(findings) > 0 and "value" not in stored[0]
    assert not any(isinstance(v, list) and v for v in vars(findings).values())  # nothing held per finding
    # values come back from the instance, in the order the scan found them
    first = next(iter(findings))
    assert [f.value for f in findings.for_instance(first.instance_id)] == \
           [f.value for f in findings if f.instance_id == first.instance_id]
    assert findings[0].value == first.value is not None
