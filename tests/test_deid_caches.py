"""The per-process caches of the engine give what computing afresh gives, and cannot be
corrupted by a caller (guards for the caches of issue 17; the uncached code passed these too)."""

from __future__ import annotations

from gantry_node.engine.deid import Keys, default_policy, deidentify, profile
from gantry_node.engine.deid.identity import Identity
from gantry_node.engine.deid.matching import byte_forms
from gantry_node.testing import Study


def test_byte_forms_result_is_the_callers_own() -> None:
    first = byte_forms("Müller", ("utf_8", "latin_1"))
    first.add(b"planted")
    first.discard("müller".encode())
    again = byte_forms("Müller", ("utf_8", "latin_1"))
    assert b"planted" not in again
    assert "müller".encode() in again


def test_rule_action_same_for_a_set_and_a_frozenset() -> None:
    rule = profile.tables().by_tag[0x00081030]  # Study Description
    for options in ({"clean_descriptors"}, set(), {"retain_device_identity", "clean_descriptors"}):
        assert rule.action(frozenset(options)) == rule.action(options) == rule._action(frozenset(options))


def test_identities_of_different_patients_do_not_share_matchers() -> None:
    a = Study.for_patient(name="DOE^JANE", patient_id="MRN1").series("CT").ct_image().build()
    b = Study.for_patient(name="ROE^RICHARD", patient_id="MRN2").series("CT").ct_image().build()
    ia, ib = Identity.of(a), Identity.of(b)
    assert ia.leak_matcher.holds("jane doe") and not ib.leak_matcher.holds("jane doe")
    assert Identity.of(a).leak_matcher is ia.leak_matcher  # one matcher per patient, reused


def test_markers_and_file_meta_as_set_by_keyword() -> None:
    ds = Study.for_patient(name="DOE^JANE", patient_id="MRN1").series("CT").ct_image().build()
    out = deidentify(ds, default_policy(), Keys(b"a test secret of 16+ bytes")).dataset
    assert out.PatientIdentityRemoved == "YES"
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence][0] == "113100"
    assert out.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator == "DCM"
    assert out.file_meta.FileMetaInformationVersion == b"\x00\x01"
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    for elem in [*out.file_meta, out["PatientIdentityRemoved"], out["DeidentificationMethod"]]:
        assert elem.validation_mode is not None and elem.validation_mode == out["SOPInstanceUID"].validation_mode
