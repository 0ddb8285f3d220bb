"""The unified configuration (scaffold, load, errors), pixels only on the instances the rules
concern, the report's verdict while work is outstanding, and validate()."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gantry_node import Session
from gantry_node.offline.config import ConfigError
from tests.support.cohort import RULE_DEVICE, fill_in_config, make_cohort


@pytest.fixture
def session(tmp_path, secret_file):
    make_cohort(tmp_path / "raw")
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s:
        s.import_folder(tmp_path / "raw", progress=False)
        yield s


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.glob("*.dcm")} if folder.exists() else {}


def test_the_scaffold_has_the_policy_and_one_rule_per_device(session, tmp_path):
    path = session.scaffold_config(tmp_path / "privacy_config.yaml")
    doc = yaml.safe_load(path.read_text())
    assert set(doc) == {"policy", "pixels"}
    assert doc["policy"]["options"]["retain_longitudinal_modified_dates"] is True
    assert doc["policy"]["overrides"]["(0010,0020)"] == "pseudonymize"
    rules = doc["pixels"]["rules"]
    assert len(rules) == len(session.devices) == 4 and all(r["regions"] is None for r in rules)
    ruled = next(r for r in rules if {"tag": "DeviceSerialNumber", "equals": RULE_DEVICE[2]} in r["match"]["all"])
    assert ruled["name"] == "Acme Sonics Model T S/N SN-US-1"
    previews = sorted(p.name for p in (tmp_path / "privacy_config_previews").glob("*.png"))
    assert previews == ["device-001.png", "device-002.png", "device-003.png", "device-004.png"]
    with pytest.raises(Exception, match="exists; not overwritten"):
        session.scaffold_config(path)


def test_load_config_errors_name_the_key(session, tmp_path):
    path = session.scaffold_config(tmp_path / "privacy_config.yaml")
    with pytest.raises(ConfigError, match=r"privacy_config.yaml: pixels.rules\[0\].regions: must be a list"):
        session.load_config(path)  # the scaffold as written: regions still to fill in
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy:\n  options: {no_such_option: true}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: policy.options.no_such_option: unknown option"):
        session.load_config(bad)
    bad.write_text("pixel: {}\n")
    with pytest.raises(ConfigError, match="bad.yaml: pixel: unknown key"):
        session.load_config(bad)


def test_pixels_only_on_the_instances_the_rules_concern(session, tmp_path):
    session.apply_remediation(progress=False)
    metadata = files(session.folder / "instances")
    path = session.scaffold_config(tmp_path / "privacy_config.yaml")
    before = (tmp_path / "privacy_config_previews" / "device-003.png").read_bytes()
    fill_in_config(path)
    session.load_config(path)
    report = session.execute_config(progress=False)
    assert report.done == 1 and len(report.held_back) == 1  # the two ultrasounds; nothing else touched
    assert files(session.folder / "instances") == metadata  # metadata outputs as they were
    assert len(files(session.folder / "pixels")) == 1
    states = sorted(str(s) for s in session.export_dataframe().PixelState)
    assert states == ["held"] + ["not-needed"] * 7 + ["redacted"]
    assert (tmp_path / "privacy_config_previews" / "device-003.png").read_bytes() != before  # load drew the regions


def test_the_report_asks_for_review_while_steps_are_outstanding(session, tmp_path):
    session.apply_remediation(progress=False)
    session.generate_report(tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    assert "**REVIEW_REQUIRED**" in text and "has not been through every step" in text
    assert "burned-in pixels not handled" in text

    path = session.scaffold_config(tmp_path / "privacy_config.yaml")
    fill_in_config(path)
    session.load_config(path)
    session.execute_config(progress=False)
    session.generate_report(tmp_path / "report.md")
    assert "**PASS**" in (tmp_path / "report.md").read_text()

    doc = yaml.safe_load(path.read_text())
    doc["policy"]["options"]["retain_patient_characteristics"] = True
    path.write_text(yaml.safe_dump(doc))
    session.load_config(path)  # another policy: every instance must be de-identified again
    assert {f.reason for f in session.audit(progress=False)} == {
        "de-identified under another policy (run apply_remediation again)"}
    session.apply_remediation(progress=False)
    assert "run execute_config" in " ".join(f.reason for f in session.audit(progress=False))
    session.execute_config(progress=False)
    assert len(session.audit(progress=False)) == 1  # the ultrasound without a rule


def test_validate_reports_a_type_2_attribute_the_policy_removed(tmp_path, secret_file):
    make_cohort(tmp_path / "raw")
    policy = tmp_path / "policy.yaml"
    policy.write_text("overrides: {StudyDate: remove}\n")
    with Session(tmp_path / "gantry.db", secret_file=secret_file, policy=policy) as s:
        s.import_folder(tmp_path / "raw", progress=False)
        assert s.validate().empty
        s.apply_remediation(progress=False)
        problems = s.validate()
    assert set(problems.keyword) == {"StudyDate"} and set(problems.problem) == {"Type 2 attribute removed"}
    assert len(problems) == 9


def _validate_one(tmp_path, secret_file, ds):
    (tmp_path / "raw").mkdir(parents=True)
    ds.save_as(tmp_path / "raw" / "ct.dcm", enforce_file_format=True)
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s:
        s.import_folder(tmp_path / "raw", progress=False)
        return s.validate()


def test_validate_reports_a_type_2_attribute_of_a_mandatory_module_the_original_lacked(tmp_path, secret_file):
    from gantry_node.testing import Study

    ds = Study.for_patient(name="DOE^JANE", patient_id="MRN1").series("CT").ct_image(rows=16, columns=16).build()
    del ds.PatientID  # Patient module (M): Type 2
    problems = _validate_one(tmp_path, secret_file, ds)
    assert list(zip(problems.keyword, problems.problem, strict=True)) == [("PatientID", "Type 2 attribute missing")]


def test_validate_asks_a_user_optional_module_only_when_it_is_present(tmp_path, secret_file):
    from gantry_node.testing import Study

    series = Study.for_patient(name="DOE^JANE", patient_id="MRN1").series("CT")
    plain = series.ct_image(rows=16, columns=16).build()  # no Overlay Plane module (U)
    assert _validate_one(tmp_path / "plain", secret_file, plain).empty
    overlay = series.ct_image(rows=16, columns=16).with_overlay().build()
    del overlay[0x60003000]  # Overlay Data: Type 1 of the Overlay Plane module, which is present
    problems = _validate_one(tmp_path / "overlay", secret_file, overlay)
    assert list(zip(problems.keyword, problems.problem, strict=True)) == [("OverlayData", "Type 1 attribute missing")]
