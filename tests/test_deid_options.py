"""Each option of Table E.1-1 changes what it should, and the date offsets keep intervals."""

from __future__ import annotations

import datetime as dt

import pytest

from gantry_node.engine.deid import OPTIONS, Keys, default_policy, deidentify
from tests.support.datasets import minimal

# option -> (attributes to plant, check on the output with the option, check without it)
CASES = {
    "retain_uids": ({}, lambda o: o.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.1002",
                    lambda o: o.StudyInstanceUID.startswith("2.25.")),
    "retain_device_identity": ({"DeviceSerialNumber": "SN-777", "StationName": "CT4"},
                               lambda o: o.DeviceSerialNumber == "SN-777" and o.StationName == "CT4",
                               lambda o: "DeviceSerialNumber" not in o and "StationName" not in o),
    "retain_institution_identity": ({"InstitutionName": "General Hospital"},
                                    lambda o: o.InstitutionName == "General Hospital",
                                    lambda o: "InstitutionName" not in o),
    "retain_patient_characteristics": ({"PatientAge": "054Y", "PatientWeight": "71", "PatientSex": "F"},
                                       lambda o: o.PatientAge == "054Y" and o.PatientSex == "F",
                                       lambda o: "PatientAge" not in o and o.PatientSex == ""),
    "retain_longitudinal_full_dates": ({"SeriesDate": "20240311"},
                                       lambda o: o.StudyDate == "20240311" and o.SeriesDate == "20240311",
                                       lambda o: o.StudyDate != "20240311"),
    "clean_descriptors": ({"SeriesDescription": "AXIAL for DOE"},
                          lambda o: o.SeriesDescription == "AXIAL for ***",
                          lambda o: "SeriesDescription" not in o),
}


def _policy(enable: str | None):
    base = default_policy()
    if enable == "retain_longitudinal_full_dates":
        return base.with_options(enable, disable=("retain_longitudinal_modified_dates",))
    return base.with_options(enable) if enable else base


@pytest.mark.parametrize("option", sorted(CASES))
def test_option_changes_the_outcome(option, keys):
    attrs, with_option, without = CASES[option]
    ds = minimal(**attrs)
    assert with_option(deidentify(ds, _policy(option), keys).dataset)
    assert without(deidentify(ds, _policy(None), keys).dataset)


def test_every_option_is_known_to_the_rules():
    import json

    from gantry_node.engine.resources import rules_file

    doc = json.loads(rules_file("ps3.15_e1-1_profile.json").read_text())
    assert set(doc["options"]) == set(OPTIONS)
    # every option column actually names rules (the other options are covered in test_deid_actions)
    for option in OPTIONS:
        assert any(option in r["options"] for r in doc["rules"]), option


def test_modified_dates_shift_every_date_by_one_offset_per_patient(keys):
    one_a = minimal(StudyDate="20240311", SeriesDate="20240311", AcquisitionDateTime="20240311101500.5+0100")
    one_b = minimal(StudyDate="20240401", StudyInstanceUID="1.2.3.77", SOPInstanceUID="1.2.3.78")
    other = minimal(PatientID="MRN999", StudyDate="20240311")
    out_a, out_b, out_o = (deidentify(d, default_policy(), keys).dataset for d in (one_a, one_b, other))

    def day(text):
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))

    # the interval between the patient's two studies is kept
    assert (day(out_b.StudyDate) - day(out_a.StudyDate)).days == 21
    assert out_a.StudyDate != "20240311"
    assert out_a.SeriesDate == out_a.StudyDate
    assert out_a.AcquisitionDateTime.startswith(out_a.StudyDate) and out_a.AcquisitionDateTime.endswith(
        "101500.5+0100")
    # another patient gets another offset (the odds of a collision are 1 in 3650)
    assert out_o.StudyDate != out_a.StudyDate
    # and the offset is inside the configured range
    shift = (day(out_a.StudyDate) - day("20240311")).days
    lo, hi = default_policy().date_shift_days
    assert lo <= shift <= hi


def test_date_shift_range_is_configurable(keys):
    from gantry_node.engine.deid import policy_from_mapping

    policy = policy_from_mapping({"date_shift_days": [-7, -7]})
    assert deidentify(minimal(), policy, keys).dataset.StudyDate == "20240304"


def test_unparsable_date_is_emptied_not_kept(keys):
    with pytest.warns(UserWarning, match="Invalid value for VR DA"):
        src = minimal(StudyDate="2024031")
    res = deidentify(src, default_policy(), keys)
    assert res.dataset.StudyDate == ""
    assert any("unparsable" in c.reason for c in res.changes)


def test_reduced_precision_datetime(keys):
    from gantry_node.engine.deid.values import shift_dt

    assert shift_dt("2024", dt.timedelta(days=-1)) == "2023"
    assert shift_dt("202403", dt.timedelta(days=-1)) == "202402"
    assert shift_dt("20240311120000-0500", dt.timedelta(days=-11)) == "20240229120000-0500"


def test_secret_changes_every_pseudonym():
    a, b = Keys(b"a" * 32), Keys(b"b" * 32)
    assert a.uid("1.2.3") != b.uid("1.2.3")
    assert a.identifier("PatientID", "X") != b.identifier("PatientID", "X")
    assert a.uid("1.2.3") == Keys(b"a" * 32).uid("1.2.3")
