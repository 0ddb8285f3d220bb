"""Re-identification (PS3.15 E.1.2 re-identifier) and the `recover` command: what is restored,
what the standard says to change, and clear, all-or-nothing failures."""

from __future__ import annotations

import logging

import pydicom
import pytest

from gantry_node.engine.deid import add_method_code, deidentify
from gantry_node.engine.deid.markers import CLEAN_PIXEL_DATA
from gantry_node.engine.seal import SealError, identity_summary, make_sealer, recover
from tests.support.seal import (
    ACCESSION,
    BIRTH_DATE,
    PATIENT_ID,
    PATIENT_NAME,
    identified_instance,
    recipient,
    save,
)


def sealed_dataset(policy, keys, recipients=None):
    original = identified_instance()
    result = deidentify(original, policy, keys)
    make_sealer([r.cert for r in (recipients or [recipient()])])(result.dataset, result.originals)
    return original, result.dataset


def test_recover_restores_the_original_values_and_sets_the_markers_as_the_standard_says(policy, keys):
    original, sealed = sealed_dataset(policy, keys)
    add_method_code(sealed, CLEAN_PIXEL_DATA)
    back = recover(sealed, recipient().key).dataset
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate",
                    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "InstitutionName"):
        assert back.get(keyword) == original.get(keyword), keyword
    assert back.RequestAttributesSequence[0].AccessionNumber == ACCESSION  # restored at depth
    assert back[0x00311001].value == original[0x00311001].value  # private value back
    assert back.PatientIdentityRemoved == "NO"
    for gone in ("DeidentificationMethod", "DeidentificationMethodCodeSequence", "EncryptedAttributesSequence",
                 "LongitudinalTemporalInformationModified"):
        assert gone not in back, gone
    assert back.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert sealed.PatientIdentityRemoved == "YES" and "EncryptedAttributesSequence" in sealed  # input untouched


def test_private_creators_come_back_with_their_private_elements(policy, keys):
    """A restored private element without its Private Creator would be unreadable."""
    original, sealed = sealed_dataset(policy, keys)
    back = recover(sealed, recipient().key).dataset
    assert back.get((0x0031, 0x0010)) is not None and back[0x00310010].value == original[0x00310010].value


def test_only_the_item_that_was_opened_is_removed(policy, keys):
    _, sealed = sealed_dataset(policy, keys, [recipient("broker-a")])
    earlier = sealed.EncryptedAttributesSequence[0]
    make_sealer([recipient("broker-b").cert])(sealed, pydicom.Dataset())  # a second item, another broker
    sealed.EncryptedAttributesSequence.reverse()  # ours first, the other last
    back = recover(sealed, recipient("broker-a").key).dataset
    assert len(back.EncryptedAttributesSequence) == 1
    assert back.EncryptedAttributesSequence[0].EncryptedContent != earlier.EncryptedContent


def test_identity_summary_lists_the_original_identity(policy, keys):
    original, sealed = sealed_dataset(policy, keys)
    summary = dict(identity_summary(recover(sealed, recipient().key).dataset))
    assert summary["patient name"] == PATIENT_NAME
    assert summary["patient ID"] == PATIENT_ID
    assert summary["birth date"] == BIRTH_DATE
    assert summary["accession number"] == ACCESSION
    assert summary["study instance UID"] == original.StudyInstanceUID
    assert summary["SOP instance UID"] == original.SOPInstanceUID


def test_nothing_sealed_is_a_clear_error(policy, keys):
    with pytest.raises(SealError, match=r"no Encrypted Attributes Sequence \(0400,0500\)"):
        recover(identified_instance(), recipient().key)


def test_recover_logs_nothing(policy, keys, caplog):
    _, sealed = sealed_dataset(policy, keys)
    with caplog.at_level(logging.DEBUG):
        recover(sealed, recipient().key)
    assert caplog.records == []


# -- the command ---------------------------------------------------------------------------

@pytest.fixture
def broker(tmp_path):
    key_path, cert_path = recipient().write(tmp_path / "broker")
    return key_path, cert_path


def write_sealed(path, policy, keys):
    return save(sealed_dataset(policy, keys)[1], path)


def tamper(path, where: int):
    ds = pydicom.dcmread(path)
    item = ds.EncryptedAttributesSequence[0]
    content = bytearray(item.EncryptedContent)
    content[where] ^= 0x41
    item.EncryptedContent = bytes(content)
    ds.save_as(path)


def truncate(path, cut: int = 40):
    ds = pydicom.dcmread(path)
    item = ds.EncryptedAttributesSequence[0]
    item.EncryptedContent = item.EncryptedContent[:-cut]
    ds.save_as(path)


def assert_one_clear_line(proc, *fragments):
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert PATIENT_NAME not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("wrong-key", "wrong private key"),
        ("truncated", "cannot decrypt Encrypted Content"),
        ("tampered-middle", "tampered"),
        ("tampered-end", "tampered"),
    ],
)
def test_recover_refuses_with_one_clear_line_and_writes_nothing(tmp_path, run_cli, broker, policy, keys,
                                                               damage, message):
    key_path, _ = broker
    sealed = write_sealed(tmp_path / "in.dcm", policy, keys)
    if damage == "wrong-key":
        key_path, _ = recipient("outsider").write(tmp_path / "outsider")
    elif damage == "truncated":
        truncate(sealed)
    elif damage == "tampered-middle":
        tamper(sealed, len(pydicom.dcmread(sealed).EncryptedAttributesSequence[0].EncryptedContent) // 2 + 40)
    else:
        tamper(sealed, -2)  # the byte before the pad: last ciphertext block
    out = tmp_path / "out"
    proc = run_cli("recover", sealed, "--key", key_path, "--out", out)
    assert_one_clear_line(proc, str(sealed), message)
    assert not out.exists() or not any(out.rglob("*"))


def test_recover_a_directory_writes_the_good_ones_and_lists_the_failures(tmp_path, run_cli, broker, policy, keys):
    key_path, _ = broker
    src = tmp_path / "in"
    src.mkdir()
    good_a = write_sealed(src / "a.dcm", policy, keys)
    bad = write_sealed(src / "b.dcm", policy, keys)
    tamper(bad, 300)
    (src / "notes.txt").write_text("not dicom")
    out = tmp_path / "out"
    proc = run_cli("recover", src, "--key", key_path, "--out", out)
    assert proc.returncode == 1
    assert "wrote 1 re-identified instance(s)" in proc.stderr and "1 failed" in proc.stderr
    assert f"failed: {bad}:" in proc.stderr and "Traceback" not in proc.stderr
    assert f"skipped: {src / 'notes.txt'}" in proc.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 1 and not any(p.name.startswith(".tmp-") for p in out.rglob("*"))
    back = pydicom.dcmread(files[0])
    assert str(back.PatientName) == PATIENT_NAME and back.PatientIdentityRemoved == "NO"
    assert back.SOPInstanceUID == identified_instance().SOPInstanceUID
    assert good_a.exists()


def test_recover_show_prints_the_identity_and_writes_nothing(tmp_path, run_cli, broker, policy, keys):
    key_path, cert_path = broker
    sealed = write_sealed(tmp_path / "in.dcm", policy, keys)
    before = sorted(tmp_path.rglob("*"))
    proc = run_cli("recover", sealed, "--key", key_path, "--cert", cert_path, "--show")
    assert proc.returncode == 0, proc.stderr
    assert f"patient name: {PATIENT_NAME}" in proc.stdout
    assert f"patient ID: {PATIENT_ID}" in proc.stdout
    assert f"accession number: {ACCESSION}" in proc.stdout
    assert sorted(tmp_path.rglob("*")) == before


def test_recover_bad_key_file_and_missing_mode_are_clear(tmp_path, run_cli, broker, policy, keys):
    _, cert_path = broker
    sealed = write_sealed(tmp_path / "in.dcm", policy, keys)
    proc = run_cli("recover", sealed, "--key", cert_path, "--show")
    assert_one_clear_line(proc, str(cert_path), "not a private key")
    proc = run_cli("recover", sealed, "--key", tmp_path / "nope.pem", "--show")
    assert_one_clear_line(proc, "nope.pem", "cannot read the private key")
    proc = run_cli("recover", sealed, "--key", broker[0])
    assert proc.returncode == 2 and "one of the arguments --show --out is required" in proc.stderr


def test_recover_out_inside_the_input_directory_is_refused(tmp_path, run_cli, broker, policy, keys):
    src = tmp_path / "in"
    src.mkdir()
    write_sealed(src / "a.dcm", policy, keys)
    proc = run_cli("recover", src, "--key", broker[0], "--out", src / "back")
    assert_one_clear_line(proc, "is inside")
    assert not (src / "back").exists()
