"""Interoperability with independent implementations of PS3.15 E.1.2: GDCM's gdcmanon and
OpenSSL's cms. What gantry-node seals, they open; what gdcmanon seals, gantry-node recovers."""

from __future__ import annotations

import shutil
from io import BytesIO

import pydicom
import pytest
from pydicom.filereader import read_dataset

from gantry_node.engine.deid import deidentify
from gantry_node.engine.seal import make_sealer
from tests.support.seal import ACCESSION, PATIENT_ID, PATIENT_NAME, identified_instance, recipient, run_tool, save

needs_gdcmanon = pytest.mark.skipif(shutil.which("gdcmanon") is None, reason="gdcmanon (libgdcm-tools) not installed")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
ALGORITHMS = ["aes256", "aes128"]


def sealed_file(tmp_path, policy, keys, algorithm, recipients):
    original = identified_instance()
    result = deidentify(original, policy, keys)
    make_sealer([r.cert for r in recipients], algorithm)(result.dataset, result.originals)
    return original, save(result.dataset, tmp_path / "sealed.dcm")


@needs_gdcmanon
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_gdcmanon_reidentifies_what_gantry_node_sealed(tmp_path, policy, keys, algorithm):
    key_path, _ = recipient().write(tmp_path / "broker")
    original, sealed = sealed_file(tmp_path, policy, keys, algorithm, [recipient()])
    assert pydicom.dcmread(sealed).PatientName != PATIENT_NAME
    out = tmp_path / "reidentified.dcm"
    proc = run_tool("gdcmanon", "-d", "-k", key_path, "-i", sealed, "-o", out)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    back = pydicom.dcmread(out)
    assert str(back.PatientName) == PATIENT_NAME
    assert back.PatientID == PATIENT_ID
    assert back.AccessionNumber == ACCESSION
    assert back.SOPInstanceUID == original.SOPInstanceUID
    assert back.StudyInstanceUID == original.StudyInstanceUID


@needs_openssl
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_openssl_cms_decrypts_the_encrypted_content_for_every_recipient(tmp_path, policy, keys, algorithm):
    recipients = [recipient("broker-a"), recipient("broker-b")]
    _, sealed = sealed_file(tmp_path, policy, keys, algorithm, recipients)
    item = pydicom.dcmread(sealed).EncryptedAttributesSequence[0]
    assert item.EncryptedContentTransferSyntaxUID == "1.2.840.10008.1.2.1"
    content = tmp_path / "content.der"
    content.write_bytes(item.EncryptedContent)  # as stored: padded to even length
    for i, r in enumerate(recipients):
        key_path, _ = r.write(tmp_path / f"broker{i}")
        plain = tmp_path / f"plain{i}"
        proc = run_tool("openssl", "cms", "-decrypt", "-inform", "DER", "-in", content,
                        "-inkey", key_path, "-out", plain)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        ds = read_dataset(BytesIO(plain.read_bytes()), is_implicit_VR=False, is_little_endian=True)
        assert list(ds.keys())[0] == 0x04000550
        (modified,) = ds.ModifiedAttributesSequence
        assert str(modified.PatientName) == PATIENT_NAME
        assert modified.PatientID == PATIENT_ID
    cms_info = run_tool("openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", content)
    assert cms_info.returncode == 0
    assert f"aes-{algorithm[3:]}-cbc".encode() in cms_info.stdout
    assert cms_info.stdout.count(b"rsaEncryption") == 2


@needs_gdcmanon
@pytest.mark.parametrize("algorithm", [*ALGORITHMS, "aes192", "des3"])  # E.1.2: AES at every key length, and 3DES
def test_gantry_node_recovers_what_gdcmanon_sealed(tmp_path, run_cli, algorithm):
    key_path, cert_path = recipient().write(tmp_path / "broker")
    original = save(identified_instance(), tmp_path / "original.dcm")
    sealed = tmp_path / "gdcm-sealed.dcm"
    proc = run_tool("gdcmanon", "-e", "-c", cert_path, f"--{algorithm}", "-i", original, "-o", sealed)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    anonymous = pydicom.dcmread(sealed)
    assert anonymous.PatientName != PATIENT_NAME and anonymous.PatientIdentityRemoved == "YES"

    out = tmp_path / "recovered"
    result = run_cli("recover", sealed, "--key", key_path, "--out", out)
    assert result.returncode == 0, result.stderr
    (written,) = list(out.rglob("*.dcm"))
    back = pydicom.dcmread(written)
    assert str(back.PatientName) == PATIENT_NAME
    assert back.PatientID == PATIENT_ID
    assert back.SOPInstanceUID == pydicom.dcmread(original).SOPInstanceUID
    assert back.PatientIdentityRemoved == "NO"
    assert "DeidentificationMethod" not in back and "EncryptedAttributesSequence" not in back

    shown = run_cli("recover", sealed, "--key", key_path, "--cert", cert_path, "--show")
    assert shown.returncode == 0, shown.stderr
    assert PATIENT_NAME in shown.stdout and PATIENT_ID in shown.stdout

    _, other_cert = recipient("outsider").write(tmp_path / "outsider")
    refused = run_cli("recover", sealed, "--key", key_path, "--cert", other_cert, "--show")
    assert refused.returncode == 2 and "not among the recipients" in refused.stderr
    assert "Traceback" not in refused.stderr and PATIENT_NAME not in refused.stdout + refused.stderr
    outsider_key, _ = recipient("outsider").write(tmp_path / "outsider2")
    refused = run_cli("recover", sealed, "--key", outsider_key, "--show")
    assert refused.returncode == 2 and "wrong private key" in refused.stderr and "Traceback" not in refused.stderr
