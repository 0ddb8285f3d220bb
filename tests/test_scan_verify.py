"""The PHI audit (scan) and the verification that guards every output."""

from __future__ import annotations

from pydicom.dataset import Dataset

from gantry_node.engine.deid import (
    Identity,
    default_policy,
    deidentify,
    findings_dataframe,
    findings_table,
    scan,
    verify,
)
from tests.support.datasets import SR, minimal


def test_scan_lists_planned_changes_and_kept_text_that_looks_like_phi(keys):
    policy = default_policy().with_options("clean_descriptors")
    ds = minimal(InstitutionName="General Hospital", WindowCenterWidthExplanation="seen by Dr X, tel 555-123-4567",
                 SeriesDescription="AXIAL")
    findings = scan(ds, policy, keys)
    by_kw = {f.keyword: f for f in findings}
    assert by_kw["InstitutionName"].action == "X"
    assert by_kw["PatientID"].action == "pseudonymize"
    phone = [f for f in findings if f.keyword == "WindowCenterWidthExplanation"]
    assert phone, "WindowCenterWidthExplanation is not in the table: kept, but the phone number must be flagged"
    assert phone[0].reason == "free text: phone number" and phone[0].action == "keep: review"
    assert "SeriesDescription" not in by_kw  # nothing identifying in it


def test_findings_never_show_values_unless_revealed(keys):
    findings = scan(minimal(), default_policy(), keys)
    assert "DOE" not in repr(findings)
    table = findings_table(findings)
    assert "DOE" not in table and "MRN12345" not in table
    assert "DOE" in findings_table(findings, reveal=True)
    df = findings_dataframe(findings)
    assert list(df.columns) == ["path", "tag", "keyword", "vr", "reason", "action"]
    assert len(df) == len(findings)
    assert "value" in findings_dataframe(findings, reveal=True).columns


def test_verify_passes_clean_output(keys):
    policy = default_policy()
    res = deidentify(minimal(InstitutionName="General Hospital"), policy, keys)
    assert verify(res.dataset, policy, res.identity) == []


def test_verify_catches_what_the_policy_removes(keys):
    policy = default_policy()
    res = deidentify(minimal(), policy, keys)
    leaked = res.dataset
    leaked.InstitutionName = "General Hospital"
    reasons = [f.reason for f in verify(leaked, policy, res.identity)]
    assert any("still present" in r for r in reasons)


def test_verify_catches_identity_anywhere_in_the_bytes(keys):
    policy = default_policy()
    res = deidentify(minimal(), policy, keys)
    ds = res.dataset
    ds.WindowCenterWidthExplanation = "follow-up for jane doe"  # kept by the profile, but holds the name
    reasons = {f.reason for f in verify(ds, policy, res.identity)}
    assert "original patient name part occurs in the output" in reasons
    ds2 = deidentify(minimal(), policy, keys).dataset
    ds2.add_new(0x00091001, "LO", "x")  # a private tag without creator still gets caught
    assert verify(ds2, policy, res.identity)


def test_verify_catches_original_uid_and_missing_marker(keys):
    policy = default_policy()
    res = deidentify(minimal(), policy, keys)
    ds = res.dataset
    ds.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1002"  # the original study UID
    del ds.PatientIdentityRemoved
    reasons = {f.reason for f in verify(ds, policy, res.identity)}
    assert "original original UID occurs in the output" in reasons or any("UID" in r for r in reasons)
    assert "Patient Identity Removed is not YES" in reasons


def test_name_parts_match_whole_words_only(keys):
    policy = default_policy()
    src = minimal(PatientName="PRE^AL")
    res = deidentify(src, policy, keys)
    res.dataset.WindowCenterWidthExplanation = "PREDECESSOR ALIGNED"
    assert verify(res.dataset, policy, res.identity) == []


def test_identity_is_never_in_repr():
    ident = Identity.of(minimal())
    assert "DOE" not in repr(ident) and "MRN12345" not in repr(ident)
    assert "JANE" in ident.name_parts


def test_empty_dataset_identity():
    assert Identity.of(Dataset()).needles() == []


def test_numbers_in_names_and_numeric_ids_do_not_fail_clean_output(keys):
    policy = default_policy()
    src = minimal(PatientName="PATIENT^SYNTHETIC^0000", PatientID="123")
    res = deidentify(src, policy, keys)
    res.dataset.WindowCenterWidthExplanation = "window 0000 level 1234"
    assert "0000" not in res.identity.name_parts
    assert verify(res.dataset, policy, res.identity) == []
    res.dataset.WindowCenterWidthExplanation = "id 123"
    assert verify(res.dataset, policy, res.identity)


def test_pixel_bytes_are_searched_for_long_values_only(keys):
    import numpy as np

    policy = default_policy()
    src = minimal(SR, Modality="SR", PatientName="DOE^JANE", PatientID="MRN123456")
    res = deidentify(src, policy, keys)
    ds = res.dataset
    pixels = bytearray(np.zeros(4096, dtype=np.uint8).tobytes())
    pixels[100:103] = b"DOE"  # a 3-byte value in pixel data is chance, not a leak
    ds.add_new(0x7FE00010, "OB", bytes(pixels))
    assert verify(ds, policy, res.identity) == []
    pixels[2000:2009] = b"mrn123456"  # a long one is a leak, in any case
    ds.add_new(0x7FE00010, "OB", bytes(pixels))
    assert [f.reason for f in verify(ds, policy, res.identity)] == ["original patient or order id occurs in the output"]
