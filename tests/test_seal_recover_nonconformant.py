"""Sealing and recovery of originals that break VR rules, as real data does: the seal holds them
as they are and recovery gives them back; only a value that cannot be written at all is refused,
naming its tag."""

from __future__ import annotations

import io
import warnings

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gantry_node.engine.seal import SealError, make_sealer, recover, seal
from gantry_node.engine.seal.cms import decode_modified_attributes, encode_modified_attributes
from tests.support.seal import recipient

LONG_REASON = "Follow-up of a lesion seen on the previous examination, " * 2 + "query"  # 117 > LO's 64


def from_file(build) -> Dataset:
    """A data set as pydicom reads it from a file (raw elements, the file's encoding)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.SOPInstanceUID = generate_uid()
    build(ds)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def nonconformant(ds: Dataset) -> None:
    ds.add_new(0x00401002, "LO", LONG_REASON)  # Reason for Requested Procedure
    ds.add_new(0x00321030, "LO", LONG_REASON)  # Reason for Study (retired), as the EPIQ 5G sends it
    ds.add_new(0x0020000D, "UI", "05fa52f0e599f17b8186ff18fcdf2b5570a52206a75c4d03afebf5c475dc8758")
    ds.add_new(0x00100020, "LO", "x" * 70)
    ds.add_new(0x00101010, "AS", "123456")
    ds.add_new(0x00110010, "UV", 2**64 - 1)  # a private creator with the wrong VR (deid-data ctbrain)
    ds.add_new(0x00111001, "OB", b"\x01\x02\x03\x04")


def originals_of(ds: Dataset, *tags: int) -> Dataset:
    out = Dataset()
    for tag in tags:
        out[tag] = ds[tag]
    return out


TAGS = (0x00100020, 0x00101010, 0x0020000D, 0x00110010, 0x00111001, 0x00321030, 0x00401002)


def test_values_that_break_vr_rules_are_sealed_and_recovered_as_they_were():
    original = from_file(nonconformant)
    sealed = from_file(nonconformant)
    for tag in TAGS:
        sealed[tag].value = b"" if sealed[tag].VR in ("OB", "UV") else ""
    make_sealer([recipient().cert])(sealed, originals_of(original, *TAGS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        back = recover(sealed, recipient().key).dataset
    assert not caught, [str(w.message) for w in caught]  # pydicom's warnings quote the value
    for tag in TAGS:
        assert back[tag].VR == original[tag].VR and back[tag].value == original[tag].value, hex(tag)


def test_text_that_does_not_decode_in_its_character_set_is_sealed_value_for_value():
    """Bytes invalid in the declared character set: pydicom decodes them with a replacement
    character, which that set cannot encode again; the item is then sealed in UTF-8, and the
    recovered instance keeps its own character set."""

    def thai(ds):
        ds.SpecificCharacterSet = "ISO_IR 166"
        ds.add_new(0x00081030, "LO", b"Study \xff note")  # 0xFF is not TIS-620

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = from_file(thai)
        description = original.StudyDescription
        sealed = from_file(thai)
        sealed.StudyDescription = "anonymous"
        make_sealer([recipient().cert])(sealed, originals_of(original, 0x00081030))
    back = recover(sealed, recipient().key).dataset
    assert back.StudyDescription == description
    assert back.SpecificCharacterSet == "ISO_IR 166"


def test_a_value_that_cannot_be_written_is_refused_naming_the_tag_not_the_value():
    originals = Dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        originals.add_new(0x00280010, "US", 70_123)  # does not fit two bytes
    with pytest.raises(SealError, match=r"\(0028,0010\)") as info:
        seal(originals, [recipient().cert])
    assert "70123" not in str(info.value)


def test_sealed_content_with_our_digest_reads_whatever_pydicom_warns():
    original = from_file(nonconformant)
    item = decode_modified_attributes(encode_modified_attributes(originals_of(original, *TAGS)))
    assert str(item[0x00321030].value) == LONG_REASON
