"""Policy files: every key validated, errors name the key."""

from __future__ import annotations

import pytest

from gantry_node.engine.deid import PolicyError, default_policy, policy_from_mapping
from gantry_node.io.settings import load_policy


@pytest.mark.parametrize(("doc", "names"), [
    ({"optoins": {}}, "optoins"),
    ({"options": {"retain_uid": True}}, "options.retain_uid"),
    ({"options": {"retain_uids": "yes"}}, "options.retain_uids"),
    ({"options": {"retain_longitudinal_full_dates": True}}, "mutually exclusive"),
    ({"date_shift_days": [10, -10]}, "date_shift_days"),
    ({"date_shift_days": [-10, 10]}, "includes 0"),
    ({"date_shift_days": "30"}, "date_shift_days"),
    ({"overrides": {"PatientNme": "keep"}}, "PatientNme"),
    ({"overrides": {"PatientName": "delete"}}, "overrides.PatientName"),
    ({"overrides": {"PatientName": {"replace": None}}}, "overrides.PatientName.replace"),
    ({"overrides": {"(0019,xx10)": "keep"}}, "private creator"),
    ({"pseudonymize_patient_name": 1}, "pseudonymize_patient_name"),
])
def test_bad_policy_names_the_key(doc, names):
    with pytest.raises(PolicyError, match=names.replace("(", r"\(").replace(")", r"\)")):
        policy_from_mapping(doc)


def test_defaults():
    p = policy_from_mapping(None)
    assert p == default_policy()
    assert p.options == {"retain_longitudinal_modified_dates"}


def test_yaml_file(tmp_path):
    f = tmp_path / "policy.yaml"
    f.write_text("options:\n  retain_uids: true\n  retain_longitudinal_modified_dates: false\n"
                 "date_shift_days: [-100, -10]\noverrides:\n  SeriesDescription: keep\n")
    p = load_policy(f)
    assert p.options == {"retain_uids"}
    assert p.date_shift_days == (-100, -10)
    f.write_text("options: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(f)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")
