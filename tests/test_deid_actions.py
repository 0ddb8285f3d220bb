"""Each action code of Table E.1-1, at every depth, on hand-made datasets."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydicom.dataset import Dataset

from gantry_node.engine.deid import Keys, default_policy, deidentify
from gantry_node.engine.deid.policy import Policy
from tests.support.datasets import CT, GSPS, SR, UNKNOWN_SOP_CLASS, item, minimal, seq

NO_DATE_OPTION = Policy(options=frozenset())


def run(ds: Dataset, policy=None, keys=None):
    return deidentify(ds, policy or default_policy(), keys or Keys(b"k" * 32))


def test_input_is_not_modified(keys):
    ds = minimal(InstitutionName="General Hospital")
    before = ds.to_json_dict()
    run(ds, keys=keys)
    assert ds.to_json_dict() == before


def test_x_removes(keys):
    out = run(minimal(OtherPatientIDs="OLD-99", InstitutionAddress="1 Main St"), keys=keys).dataset
    assert "OtherPatientIDs" not in out and "InstitutionAddress" not in out


def test_z_empties_and_patient_name_becomes_the_patient_pseudonym(keys):
    res = run(minimal(ReferringPhysicianName="HOUSE^GREGORY"), keys=keys)
    out = res.dataset
    assert out.ReferringPhysicianName == ""
    assert out.PatientID == keys.identifier("PatientID", "MRN12345")
    assert str(out.PatientName) == out.PatientID
    plain = Policy(options=default_policy().options, overrides=default_policy().overrides,
                   pseudonymize_patient_name=False)
    assert run(minimal(), plain, keys).dataset.PatientName == ""


def test_d_replaces_with_a_dummy(keys):
    ds = minimal(VerifyingObserverName="WATSON^JOHN")
    out = run(ds, keys=keys).dataset
    assert str(out.VerifyingObserverName) == "ANONYMIZED"


def test_u_replaces_uids_consistently_at_every_depth(keys):
    study = "1.2.826.0.1.3680043.8.498.1002"
    ds = minimal(ReferencedStudySequence=seq(item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",
                                                  ReferencedSOPInstanceUID=study)))
    ds.SourceImageSequence = seq(item(ReferencedSOPClassUID=CT, ReferencedSOPInstanceUID="1.2.3.999"))
    out = run(ds, NO_DATE_OPTION.with_options("retain_uids", disable=("retain_uids",)), keys).dataset
    new_study = keys.uid(study)
    assert out.StudyInstanceUID == new_study and new_study.startswith("2.25.")
    assert len(new_study) <= 64
    assert out.SOPInstanceUID == keys.uid("1.2.826.0.1.3680043.8.498.1001")
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    # SOP *class* UIDs are never replaced
    assert out.SOPClassUID == CT


def test_k_keeps_and_still_cleans_inside_kept_sequences(keys):
    # Code sequences are not in the table (K): kept, but a name nested inside is still handled.
    ds = minimal(AnatomicRegionSequence=seq(item(CodeValue="T-D3000", CodingSchemeDesignator="SRT",
                                                 CodeMeaning="Chest", ReferringPhysicianName="HOUSE^G")))
    out = run(ds, keys=keys).dataset
    region = out.AnatomicRegionSequence[0]
    assert region.CodeMeaning == "Chest" and region.ReferringPhysicianName == ""


def test_c_cleans_descriptors_under_the_option(keys):
    ds = minimal(StudyDescription="CT CHEST for DOE, MRN12345 on 2024-03-11", SeriesDescription="AXIAL 5mm")
    basic = run(ds, keys=keys).dataset
    assert "StudyDescription" not in basic and "SeriesDescription" not in basic
    clean = run(ds, default_policy().with_options("clean_descriptors"), keys).dataset
    assert clean.SeriesDescription == "AXIAL 5mm"
    assert "DOE" not in clean.StudyDescription and "MRN12345" not in clean.StudyDescription
    assert "2024-03-11" not in clean.StudyDescription and clean.StudyDescription.startswith("CT CHEST")


@pytest.mark.parametrize(("sop_class", "expected"), [(CT, ""), (SR, "19000101")])
def test_z_d_resolves_by_iod_type(keys, sop_class, expected):
    # ContentDate is Type 2 in the CT Image IOD (-> Z) and Type 1 in SR documents (-> D)
    out = run(minimal(sop_class, ContentDate="20240311"), NO_DATE_OPTION, keys).dataset
    assert out.ContentDate == expected


def test_x_z_d_resolves_to_x_for_type_3(keys):
    out = run(minimal(StationName="CT-ROOM-4", DeviceSerialNumber="SN-777"), keys=keys).dataset
    assert "StationName" not in out and "DeviceSerialNumber" not in out


def test_x_d_with_unknown_sop_class_keeps_presence_with_a_dummy(keys):
    out = run(minimal(UNKNOWN_SOP_CLASS, ProtocolName="Dr Who protocol"), keys=keys).dataset
    assert out.ProtocolName == "ANONYMIZED"


def test_x_z_resolves_to_x_for_type_3(keys):
    out = run(minimal(AcquisitionDate="20240311"), NO_DATE_OPTION, keys).dataset
    assert "AcquisitionDate" not in out


def test_x_z_u_star_keeps_required_references_with_new_uids(keys):
    image_uid = "1.2.826.0.1.3680043.8.498.2001"
    ref = item(ReferencedSOPClassUID=CT, ReferencedSOPInstanceUID=image_uid)
    pr = minimal(GSPS, Modality="PR", ReferencedSeriesSequence=seq(item(
        SeriesInstanceUID="1.2.826.0.1.3680043.8.498.1003", ReferencedImageSequence=seq(ref))))
    out = run(pr, keys=keys).dataset
    kept = out.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
    assert kept.ReferencedSOPInstanceUID == keys.uid(image_uid)
    assert kept.ReferencedSOPClassUID == CT
    # the same sequence is Type 3 in a CT image: kept too (references: keep, the default), its
    # UIDs replaced; `references: remove` removes it there
    ct = minimal(ReferencedImageSequence=seq(ref))
    assert run(ct, keys=keys).dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID == keys.uid(image_uid)
    strict = replace(default_policy(), references="remove")
    assert "ReferencedImageSequence" not in run(ct, strict, keys).dataset
    assert "ReferencedSeriesSequence" in run(pr, strict, keys).dataset


def test_three_deep_sequences_get_every_rule(keys):
    deepest = item(ReferringPhysicianName="HOUSE^GREGORY", ReferencedSOPInstanceUID="1.2.3.4.5.6",
                   ReferencedSOPClassUID=CT, InstitutionName="General Hospital",
                   ObservationDateTime="20240311101500")
    ds = minimal(AnatomicRegionSequence=seq(item(CodeValue="1", CodingSchemeDesignator="99X", CodeMeaning="a",
        AnatomicRegionModifierSequence=seq(item(CodeValue="2", CodingSchemeDesignator="99X", CodeMeaning="b",
            PurposeOfReferenceCodeSequence=seq(deepest))))))
    res = run(ds, keys=keys)
    got = res.dataset.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0].PurposeOfReferenceCodeSequence[0]
    assert got.ReferringPhysicianName == ""
    assert got.ReferencedSOPInstanceUID == keys.uid("1.2.3.4.5.6")
    assert "InstitutionName" not in got
    offset = keys.date_offset(res.identity.patient_key, default_policy().date_shift_days)
    assert got.ObservationDateTime != "20240311101500" and got.ObservationDateTime.endswith("101500")
    paths = {c.path for c in res.changes}
    assert "(0008,2218)[0].(0008,2220)[0].(0040,A170)[0].(0008,0090)" in paths
    assert offset.days < 0
    # the originals for E.1.2 hold the whole top-level sequence that changed below
    assert "AnatomicRegionSequence" in res.originals


def test_private_elements_removed_unless_safe_and_option(keys):
    ds = minimal()
    block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    block.add_new(0x23, "DS", "1.375")  # Table E.3.10-1: Table Speed, safe
    block.add_new(0x40, "LO", "DOE^JANE")  # not listed: unsafe
    other = ds.private_block(0x0029, "ACME 1.1", create=True)
    other.add_new(0x01, "LO", "DOE^JANE")
    basic = run(ds, keys=keys).dataset
    assert not [e for e in basic if e.tag.is_private]
    safe = run(ds, default_policy().with_options("retain_safe_private"), keys).dataset
    private = {int(e.tag): e.value for e in safe if e.tag.is_private}
    assert private == {0x00190010: "GEMS_ACQU_01", 0x00191023: "1.375"}


def test_overlays_and_curves_are_removed_whole(keys):
    ds = minimal()
    ds.add_new(0x60000010, "US", 2)
    ds.add_new(0x60000011, "US", 2)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\x01\x00")
    ds.add_new(0x50000005, "US", 1)
    ds.add_new(0x50003000, "OW", b"\x01\x00")
    out = run(ds, keys=keys).dataset
    assert not [e for e in out if e.tag.group in (0x5000, 0x6000)]
    graphics = run(ds, default_policy().with_options("clean_graphics"), keys).dataset
    assert 0x60003000 in graphics  # Clean Graphics keeps the overlay (C)


def test_content_sequence_free_text_is_dummied_and_cleaned_under_option(keys):
    text = item(RelationshipType="CONTAINS", ValueType="TEXT", TextValue="Patient Jane Doe, call 555-123-4567",
                ConceptNameCodeSequence=seq(item(CodeValue="121071", CodingSchemeDesignator="DCM",
                                                 CodeMeaning="Finding")))
    ds = minimal(SR, Modality="SR", ValueType="CONTAINER", ContentSequence=seq(text))
    out = run(ds, keys=keys).dataset
    got = out.ContentSequence[0]
    assert got.TextValue == "ANONYMIZED"
    assert got.ConceptNameCodeSequence[0].CodeMeaning == "Finding"  # codes are not free text
    clean = run(ds, default_policy().with_options("clean_structured_content"), keys).dataset
    assert clean.ContentSequence[0].TextValue == "Patient *** ***, call ***"


def test_markers(keys):
    out = run(minimal(), keys=keys).dataset
    assert out.PatientIdentityRemoved == "YES"
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113107"]
    assert all(i.CodingSchemeDesignator == "DCM" for i in out.DeidentificationMethodCodeSequence)
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "Basic Application Confidentiality Profile" in out.DeidentificationMethod
    full = run(minimal(), default_policy().with_options("retain_longitudinal_full_dates",
                                                         disable=("retain_longitudinal_modified_dates",)), keys)
    assert full.dataset.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert run(minimal(), NO_DATE_OPTION, keys).dataset.LongitudinalTemporalInformationModified == "REMOVED"


def test_file_meta_is_new(keys):
    ds = minimal()
    ds.file_meta.ImplementationVersionName = "SITE_PACS"
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    out = run(ds, keys=keys).dataset
    assert out.file_meta.ImplementationVersionName.startswith("GANTRY")
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_site_overrides(keys):
    from gantry_node.engine.deid import policy_from_mapping

    policy = policy_from_mapping({"overrides": {
        "InstitutionName": {"replace": "Research Site A"},
        "SeriesDescription": "keep",
        "Modality": "remove",
        "(0008,0090)": "pseudonymize",
        "(0019,xx40) GEMS_ACQU_01": "keep",
    }})
    ds = minimal(InstitutionName="General Hospital", SeriesDescription="AXIAL", ReferringPhysicianName="HOUSE")
    ds.private_block(0x0019, "GEMS_ACQU_01", create=True).add_new(0x40, "LO", "protocol 7")
    out = run(ds, policy, keys).dataset
    assert out.InstitutionName == "Research Site A"
    assert out.SeriesDescription == "AXIAL"
    assert "Modality" not in out
    assert str(out.ReferringPhysicianName) == keys.identifier("ReferringPhysicianName", "HOUSE")
    assert out[0x00191040].value == "protocol 7" and out[0x00190010].value == "GEMS_ACQU_01"


def test_deterministic_across_runs_and_secret_dependent():
    from gantry_node.io.part10 import encode_instance

    ds = minimal(InstitutionName="General Hospital")
    a = encode_instance(run(ds, keys=Keys(b"a" * 32)).dataset)
    b = encode_instance(run(ds, keys=Keys(b"a" * 32)).dataset)
    c = encode_instance(run(ds, keys=Keys(b"c" * 32)).dataset)
    assert a == b and a != c


def test_kept_free_text_holding_the_identity_is_cleaned(keys):
    # WindowCenterWidthExplanation is not in Table E.1-1: kept, but not with the patient in it
    res = run(minimal(WindowCenterWidthExplanation="for Doe, MRN12345", ConvolutionKernel="STANDARD"), keys=keys)
    assert res.dataset.WindowCenterWidthExplanation == "for ***, ***"
    assert res.dataset.ConvolutionKernel == "STANDARD"
    change = next(c for c in res.changes if c.keyword == "WindowCenterWidthExplanation")
    assert change.action == "C" and "identity" in change.reason


def test_plain_x_on_a_type_1_attribute_keeps_the_output_valid(keys):
    # Presentation Creation Date is X in the Basic Profile but Type 1 in every presentation state
    pr = minimal(GSPS, Modality="PR", PresentationCreationDate="20240311", PresentationCreationTime="101500")
    out = run(pr, NO_DATE_OPTION, keys).dataset
    assert out.PresentationCreationDate == "19000101" and out.PresentationCreationTime == "000000"
    assert "PresentationCreationDate" not in run(minimal(PresentationCreationDate="20240311"), NO_DATE_OPTION,
                                                 keys).dataset
