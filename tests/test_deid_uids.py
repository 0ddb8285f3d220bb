"""Every UID that is not the standard's own is replaced wherever it sits (DESIGN principle 9);
references between instances survive; public elements the dictionary does not know are removed;
verification quarantines an instance whose identifying UIDs are not single valid UIDs."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO

import pydicom
import pytest
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gantry_node.engine.deid import default_policy, deidentify, profile, verify
from gantry_node.engine.deid.markers import REFERENCES_KEPT
from gantry_node.engine.pipeline import Engine, Quarantine, process
from gantry_node.io.part10 import encode_instance
from gantry_node.testing import Study
from gantry_node.testing.documents import sop_reference
from tests.support.datasets import item, minimal, seq

UID_PROBLEM = "UID neither the standard's own nor a pseudonym"
# Registry UIDs: a SOP class, transfer syntaxes, a well-known frame of reference, the DCM coding
# scheme, SNOMED CT's coding scheme UID (PS3.16 Table 8-1)
REGISTRY = [CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, "1.2.840.10008.1.4.1.1",
            "1.2.840.10008.2.16.4", "2.16.840.1.113883.6.96"]


def unlisted_ui_tags() -> list[int]:
    """Every UI element of pydicom's dictionary that Table E.1-1 does not list (the command and
    file meta groups 0000 and 0002 never occur in a data set)."""
    listed = profile.tables().by_tag
    return sorted(t for t, entry in DicomDictionary.items()
                  if entry[0] == "UI" and t >> 16 not in (0x0000, 0x0002) and t not in listed)


def planted(values: dict[int, str]):
    """A CT with each value at top level and inside an item of a sequence Table E.1-1 does not
    list (Anatomic Region Sequence), round-tripped through bytes so the elements are raw."""
    region = item(CodeValue="T-D3000", CodingSchemeDesignator="SRT", CodeMeaning="Chest")
    for tag, value in values.items():
        region.add(DataElement(tag, "UI", value))
    ds = minimal(AnatomicRegionSequence=seq(region))
    for tag, value in values.items():
        ds.add(DataElement(tag, "UI", value))
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(BytesIO(buffer.getvalue()))


def test_every_unlisted_ui_element_gets_its_uid_replaced(keys):
    tags = unlisted_ui_tags()
    assert len(tags) > 40 and 0x00200242 in tags and 0x00080016 in tags  # e.g. Concatenation Source
    originals = {tag: f"1.2.826.0.1.3680043.8.498.77.{i}" for i, tag in enumerate(tags)}
    res = deidentify(planted(originals), default_policy(), keys)
    out = res.dataset
    for where in (out, out.AnatomicRegionSequence[0]):
        for tag, original in originals.items():
            assert where[tag].value == keys.uid(original), f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    encoded = encode_instance(out)
    assert not [u for u in originals.values() if u.encode() in encoded]
    assert not [f for f in verify(out, default_policy(), res.identity) if f.reason == UID_PROBLEM]
    # with Retain UIDs they stay
    kept = deidentify(planted(originals), default_policy().with_options("retain_uids"), keys).dataset
    assert kept[0x00200242].value == originals[0x00200242]


def test_registry_uids_in_unlisted_elements_are_untouched(keys):
    values = {tag: REGISTRY[i % len(REGISTRY)] for i, tag in enumerate(unlisted_ui_tags())}
    out = deidentify(planted(values), default_policy(), keys).dataset
    for where in (out, out.AnatomicRegionSequence[0]):
        assert {tag: where[tag].value for tag in values} == values


def test_verification_fails_an_original_uid_in_an_unlisted_element(keys):
    res = deidentify(minimal(), default_policy(), keys)
    res.dataset.SOPInstanceUIDOfConcatenationSource = "1.2.826.0.1.3680043.8.498.1001"
    res.dataset.AnatomicRegionSequence = seq(item(CodeValue="1", CodingSchemeDesignator="99X",
                                                 TableFrameOfReferenceUID="1.2.826.0.1.3680043.8.498.5"))
    found = [f for f in verify(res.dataset, default_policy(), res.identity) if f.reason == UID_PROBLEM]
    assert sorted(f.path for f in found) == ["(0008,2218)[0].(0020,9313)", "(0020,0242)"]
    res.dataset.SOPInstanceUIDOfConcatenationSource = CTImageStorage  # a registry UID passes
    del res.dataset.AnatomicRegionSequence
    assert not [f for f in verify(res.dataset, default_policy(), res.identity) if f.reason == UID_PROBLEM]


def two_cts():
    study = Study.for_patient(name="DOE^JANE", patient_id="MRN12345", birth_date="19700214").on("20240311")
    localizer, image = study.series("CT").ct_images(2, rows=32, columns=32)
    image.ReferencedImageSequence = seq(sop_reference(localizer))
    image.SourceImageSequence = seq(sop_reference(localizer))
    return localizer, image


def test_a_ct_still_references_its_localizer_with_the_new_uid(keys):
    localizer, image = two_cts()
    engine = Engine(default_policy(), keys)
    clean_localizer = process(localizer, engine).dataset
    clean = process(image, engine)  # verified: nothing identifying in the kept references
    for name in ("ReferencedImageSequence", "SourceImageSequence"):
        ref = clean.dataset[name][0]
        assert ref.ReferencedSOPInstanceUID == clean_localizer.SOPInstanceUID != localizer.SOPInstanceUID
        assert ref.ReferencedSOPClassUID == CTImageStorage
    assert REFERENCES_KEPT in clean.dataset.DeidentificationMethod
    # references: remove restores the strict removal of the Type 3 sequences
    strict = deidentify(image, replace(default_policy(), references="remove"), keys).dataset
    assert "ReferencedImageSequence" not in strict and "SourceImageSequence" not in strict
    assert REFERENCES_KEPT not in strict.DeidentificationMethod


def test_the_references_key_is_checked():
    from gantry_node.engine.deid import PolicyError, policy_from_mapping

    assert policy_from_mapping({"references": "remove"}).references == "remove"
    assert policy_from_mapping({}).references == "keep"
    with pytest.raises(PolicyError, match="references"):
        policy_from_mapping({"references": "drop"})


def with_unknown_public_elements():
    region = item(CodeValue="1", CodingSchemeDesignator="99X", CodeMeaning="a")
    region.add(DataElement(0x10080080, "LO", "General Hospital"))
    ds = minimal(AnatomicRegionSequence=seq(region))
    ds.add(DataElement(0x10080080, "LO", "General Hospital"))
    ds.add(DataElement(0x2020000E, "UI", "1.2.826.0.1.3680043.8.498.4242"))
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(BytesIO(buffer.getvalue()))


def test_unknown_public_elements_are_removed_and_recorded(keys):
    res = deidentify(with_unknown_public_elements(), default_policy(), keys)
    assert 0x10080080 not in res.dataset and 0x2020000E not in res.dataset
    assert 0x10080080 not in res.dataset.AnatomicRegionSequence[0]
    encoded = encode_instance(res.dataset)
    assert b"General Hospital" not in encoded and b"4242" not in encoded
    removed = {(c.path, c.action) for c in res.changes if "dictionary does not define" in c.reason}
    assert removed == {("(1008,0080)", "X"), ("(2020,000E)", "X"), ("(0008,2218)[0].(1008,0080)", "X")}


def test_verification_fails_an_unknown_public_element(keys):
    res = deidentify(minimal(), default_policy(), keys)
    res.dataset.add(DataElement(0x2020000E, "UI", "2.25.1"))
    found = verify(res.dataset, default_policy(), res.identity)
    assert [(f.path, f.reason) for f in found] == [
        ("(2020,000E)", "public element the data dictionary does not define")]


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS", "ignore:Invalid value for VR UI")
def test_a_vr_other_than_the_dictionarys_is_read_as_the_dictionarys(keys):
    ds = minimal(AnatomicRegionSequence=seq(item(CodeValue="1", CodingSchemeDesignator="99X")))
    ds.add(DataElement(0x00200052, "LO", "1.2.826.0.1.3680043.8.498.55"))  # Frame of Reference UID
    ds.add(DataElement(0x00180088, "LO", "DOE JANE"))  # Spacing Between Slices (DS): not a number
    ds.add(DataElement(0x00200242, "UN", b"1.2.826.0.1.3680043.8.498.56\x00"))  # UI as UN
    ds.add(DataElement(0x00180050, "UN", b"1.25"))  # Slice Thickness (DS) as UN: kept as DS
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    res = deidentify(pydicom.dcmread(BytesIO(buffer.getvalue())), default_policy(), keys)
    out = res.dataset
    assert (out[0x00200052].VR, out[0x00200052].value) == ("UI", keys.uid("1.2.826.0.1.3680043.8.498.55"))
    assert (out[0x00200242].VR, out[0x00200242].value) == ("UI", keys.uid("1.2.826.0.1.3680043.8.498.56"))
    assert 0x00180088 not in out
    assert (out[0x00180050].VR, float(out[0x00180050].value)) == ("DS", 1.25)
    assert [c.reason for c in res.changes if c.tag == 0x00180088] == [
        "VR LO is not the dictionary's DS and the value cannot be read as it"]


def ct():
    study = Study.for_patient(name="DOE^JANE", patient_id="MRN12345").on("20240311")
    return study.series("CT").ct_image(rows=32, columns=32).build()


@pytest.mark.parametrize(("keyword", "value", "reason"), [
    ("SOPInstanceUID", ["1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"],
     "SOPInstanceUID has 2 values, not one"),
    ("SOPClassUID", "1.2.840.10008.5.1.4.1.1.2.x", "SOPClassUID is not a valid UID"),
    ("SOPClassUID", "1.2.826.0.1.3680043.8.498.3", "SOPClassUID is not a SOP class of the standard"),
    ("FrameOfReferenceUID", "1." + "2" * 70, None),  # too long: replaced by its pseudonym (U), valid
])
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI", "ignore:The value length")
def test_identifying_uids_that_are_not_one_valid_uid_are_quarantined(keys, keyword, value, reason):
    ds = ct()
    setattr(ds, keyword, value)
    engine = Engine(default_policy(), keys)
    if reason is None:
        assert pydicom.uid.UID(str(process(ds, engine).dataset.FrameOfReferenceUID)).is_valid
        return
    with pytest.raises(Quarantine) as caught:
        process(ds, engine)
    assert caught.value.stage == "verify"
    assert reason in [f.reason for f in caught.value.findings]
