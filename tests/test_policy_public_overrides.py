"""public_overrides(overrides).get(tag) must answer what overrides.get(OverrideKey(tag=tag)) answers."""

from __future__ import annotations

from pydicom.datadict import DicomDictionary

from gantry_node.engine.deid.policy import OverrideKey, policy_from_mapping, public_overrides


def test_public_override_lookup_by_tag_is_the_keyed_lookup():
    policy = policy_from_mapping({"overrides": {
        "InstitutionName": "keep", "StationName": "empty", "(0008,1030)": "remove",
        "StudyDescription": {"replace": "CT"},
        "(0009,xx10) ACME 1.1": "keep", "(0019,xx08) SIEMENS MR HEADER": "remove",
    }})
    assert any(key.is_private for key in policy.overrides)
    by_tag = public_overrides(policy.overrides)
    tags = list(DicomDictionary) + [0x00091010, 0x00191008, 0x00090010, 0x60003000]
    hits = 0
    for tag in tags:
        want = policy.overrides.get(OverrideKey(tag=tag))
        assert by_tag.get(tag) is want, hex(tag)
        hits += want is not None
    assert hits >= 4
