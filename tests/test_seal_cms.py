"""Sealing the original attributes (PS3.15 E.1.2) and opening them again, in memory."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.filereader import read_dataset
from pydicom.uid import ExplicitVRLittleEndian

from gantry_node.engine.deid import default_policy, deidentify, verify
from gantry_node.engine.deid.identity import Identity
from gantry_node.engine.pipeline import Engine, process
from gantry_node.engine.seal import SealError, make_sealer, seal, unseal
from gantry_node.engine.seal.cms import DIGEST_PREFIX, decrypt_content, der_without_padding, split_digest
from tests.support.seal import ACCESSION, PATIENT_ID, PATIENT_NAME, identified_instance, recipient


def sealed(policy, keys, recipients=None, algorithm="aes256"):
    ds = identified_instance()
    result = deidentify(ds, policy, keys)
    make_sealer(recipients or [recipient().cert], algorithm)(result.dataset, result.originals)
    return ds, result


def content_of(ds) -> bytes:
    return ds.EncryptedAttributesSequence[-1].EncryptedContent


@pytest.mark.parametrize("algorithm", ["aes256", "aes128"])
def test_round_trip_restores_every_changed_top_level_element(policy, keys, algorithm):
    original, result = sealed(policy, keys, algorithm=algorithm)
    item = result.dataset.EncryptedAttributesSequence[0]
    assert item.EncryptedContentTransferSyntaxUID == ExplicitVRLittleEndian
    assert item["EncryptedContent"].VR == "OB"
    opened = unseal(result.dataset, recipient().key)
    assert str(opened.PatientName) == PATIENT_NAME
    assert opened.PatientID == PATIENT_ID
    assert opened.RequestAttributesSequence[0].AccessionNumber == ACCESSION  # nested, via its top-level sequence
    # plus the character set the text values are in (CT_small is ISO_IR 100), and SOP Instance UID
    assert set(opened.keys()) == set(result.originals.keys()) | {0x00080005, 0x00080018}
    for elem in result.originals:
        assert opened[elem.tag].value == elem.value, elem.tag


def test_content_algorithm_is_the_one_asked_for(policy, keys):
    from asn1crypto import cms

    for algorithm, oid_name in (("aes256", "aes256_cbc"), ("aes128", "aes128_cbc")):
        _, result = sealed(policy, keys, algorithm=algorithm)
        info = cms.ContentInfo.load(der_without_padding(content_of(result.dataset)))
        enc = info["content"]["encrypted_content_info"]["content_encryption_algorithm"]
        assert enc["algorithm"].native == oid_name
        (ktri,) = info["content"]["recipient_infos"]
        assert ktri.chosen["key_encryption_algorithm"]["algorithm"].native == "rsaes_pkcs1v15"


def test_plaintext_is_the_gdcmanon_form_plus_a_digest_in_trailing_padding(policy, keys):
    import hashlib

    _, result = sealed(policy, keys)
    plain = decrypt_content(der_without_padding(content_of(result.dataset)), recipient().key)
    assert plain[:4] == b"\x00\x04\x50\x05" and plain[4:6] == b"SQ"  # (0400,0550), explicit VR, LE
    ds = read_dataset(BytesIO(plain), is_implicit_VR=False, is_little_endian=True)
    assert list(ds.keys()) == [0x04000550, 0xFFFCFFFC]
    assert len(ds.ModifiedAttributesSequence) == 1
    assert ds.ModifiedAttributesSequence[0].PatientID == PATIENT_ID
    body, digest = split_digest(plain)
    assert plain.startswith(body) and len(plain) - len(body) == 12 + len(DIGEST_PREFIX) + 32
    assert ds.DataSetTrailingPadding == DIGEST_PREFIX + hashlib.sha256(body).digest() == DIGEST_PREFIX + digest


def test_content_without_our_digest_is_still_read(policy, keys):
    """gdcmanon's form: the Modified Attributes Sequence element alone."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    _, result = sealed(policy, keys)
    plain = decrypt_content(der_without_padding(content_of(result.dataset)), recipient().key)
    body, _ = split_digest(plain)
    der = (pkcs7.PKCS7EnvelopeBuilder().set_data(body).add_recipient(recipient().cert)
           .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    result.dataset.EncryptedAttributesSequence[0].EncryptedContent = der
    assert unseal(result.dataset, recipient().key).PatientID == PATIENT_ID


def test_sop_instance_uid_is_always_sealed_for_gdcmanon(keys):
    # With Retain UIDs the UID is not changed, but gdcmanon -d refuses an item without it.
    policy = default_policy().with_options("retain_uids")
    ds, result = sealed(policy, keys)
    assert "SOPInstanceUID" not in result.originals
    assert unseal(result.dataset, recipient().key).SOPInstanceUID == ds.SOPInstanceUID


def test_every_recipient_can_open_it_with_or_without_its_certificate(policy, keys):
    recipients = [recipient("broker-a"), recipient("broker-b"), recipient("broker-c")]
    _, result = sealed(policy, keys, [r.cert for r in recipients])
    for r in recipients:
        assert unseal(result.dataset, r.key).PatientID == PATIENT_ID
        assert unseal(result.dataset, r.key, r.cert).PatientID == PATIENT_ID


def test_a_key_that_is_not_a_recipient_is_refused(policy, keys):
    _, result = sealed(policy, keys, [recipient("broker-a").cert])
    outsider = recipient("outsider")
    with pytest.raises(SealError, match="wrong private key|not among the recipients"):
        unseal(result.dataset, outsider.key)
    with pytest.raises(SealError, match="not among the recipients"):
        unseal(result.dataset, outsider.key, outsider.cert)


@pytest.mark.parametrize("cut", [1, 17, 200])
def test_truncated_content_is_refused(policy, keys, cut):
    _, result = sealed(policy, keys)
    item = result.dataset.EncryptedAttributesSequence[0]
    item.EncryptedContent = content_of(result.dataset)[:-cut]
    with pytest.raises(SealError, match="cannot decrypt|not a valid CMS|tampered"):
        unseal(result.dataset, recipient().key)


def test_tampered_content_is_refused_wherever_the_byte_is(policy, keys):
    """Our seals carry a SHA-256 inside the encryption: any changed ciphertext byte is caught."""
    _, result = sealed(policy, keys)
    good = der_without_padding(content_of(result.dataset))
    item = result.dataset.EncryptedAttributesSequence[0]
    for pos in range(len(good) - 700, len(good)):  # the ciphertext (and the IV before it)
        bad = bytearray(good)
        bad[pos] ^= 0x01 << (pos % 8)
        item.EncryptedContent = bytes(bad)
        with pytest.raises(SealError, match="tampered|cannot decrypt"):
            unseal(result.dataset, recipient().key, recipient().cert)


def test_tampered_encrypted_key_is_refused(policy, keys):
    from asn1crypto import cms

    _, result = sealed(policy, keys)
    info = cms.ContentInfo.load(der_without_padding(content_of(result.dataset)))
    ktri = info["content"]["recipient_infos"][0].chosen
    key_bytes = bytearray(ktri["encrypted_key"].native)
    key_bytes[len(key_bytes) // 2] ^= 0x10
    ktri["encrypted_key"] = bytes(key_bytes)
    result.dataset.EncryptedAttributesSequence[0].EncryptedContent = info.dump(force=True)
    with pytest.raises(SealError, match="wrong private key, or tampered content|tampered"):
        unseal(result.dataset, recipient().key)


def test_non_ascii_names_survive(policy, keys):
    ds = identified_instance()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Müller^Zoë=山田^太郎"
    result = deidentify(ds, policy, keys)
    make_sealer([recipient().cert])(result.dataset, result.originals)
    assert str(unseal(result.dataset, recipient().key).PatientName) == "Müller^Zoë=山田^太郎"


def test_seal_refuses_no_recipient_and_unknown_algorithm():
    with pytest.raises(SealError, match="at least one"):
        make_sealer([])
    with pytest.raises(SealError, match="aes256 or aes128"):
        make_sealer([recipient().cert], "des")
    with pytest.raises(SealError, match="at least one"):
        seal(identified_instance(), [])


def test_pipeline_with_sealing_passes_verification(policy, keys):
    ds = identified_instance()
    clean = process(ds, Engine(policy, keys, sealer=make_sealer([recipient().cert])))
    assert clean.notes.get("sealed") is True and clean.notes.get("verified") is True
    assert verify(clean.dataset, policy, Identity.of(ds)) == []
    assert unseal(clean.dataset, recipient().key).PatientName == PATIENT_NAME


def test_sealing_needs_only_the_certificate(tmp_path, policy, keys):
    """The node's side: a certificate file, no key anywhere near it."""
    from gantry_node.engine.seal import load_recipients

    _, cert_path = recipient().write(tmp_path / "broker")
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    (node_dir / "cert.pem").write_bytes(cert_path.read_bytes())
    (tmp_path / "broker" / "broker-key.pem").unlink()
    certs = load_recipients([node_dir / "cert.pem"])
    ds = identified_instance()
    result = deidentify(ds, policy, keys)
    make_sealer(certs)(result.dataset, result.originals)
    assert b"PRIVATE KEY" not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert unseal(result.dataset, recipient().key).PatientID == PATIENT_ID


def test_verification_ignores_short_ids_that_ciphertext_happens_to_contain(policy, keys):
    """Ciphertext is random bytes: a 3-character patient ID turns up in it by chance now and then.
    A sealed instance must not be quarantined for that."""
    ds = identified_instance()
    ds.PatientID = "Q7Z"
    result = deidentify(ds, policy, keys)
    make_sealer([recipient().cert])(result.dataset, result.originals)
    item = result.dataset.EncryptedAttributesSequence[0]
    item.EncryptedContent = b"\x8f\x01Q7Z\x93" + content_of(result.dataset)
    assert verify(result.dataset, policy, Identity.of(ds)) == []
