"""The Session API for reversible de-identification."""

from __future__ import annotations

import pydicom
import pytest

from gantry_node import Session
from gantry_node.engine.seal import SealingConfigError
from tests.support.seal import PATIENT_ID, PATIENT_NAME, certificate, identified_instance, recipient, save


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    save(identified_instance(), src / "ct.dcm")
    return src


def test_anonymize_seals_and_recover_restores(tmp_path, folder, secret_file):
    key_path, cert_path = recipient().write(tmp_path / "broker")
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s:
        s.ingest(folder)
        s.enable_reversible_anonymization(cert_path, algorithm="aes128")
        backup = s.preserve_identities(s.scan_for_phi())
        assert backup.algorithm == "aes128" and len(backup.recipients) == 1
        assert backup.pending == [1] and backup.sealed == []
        s.apply_remediation()
        assert not s.audit()
        (out,) = s.export(tmp_path / "clean").written
        clean = pydicom.dcmread(out)
        assert clean.PatientName != PATIENT_NAME and "EncryptedAttributesSequence" in clean
        s.generate_report(tmp_path / "report.md")
        assert "Reversible identity sealing: on, aes128" in (tmp_path / "report.md").read_text()

        back = s.recover_patient_identity(out, key_path)
        assert str(back.PatientName) == PATIENT_NAME and back.PatientID == PATIENT_ID
        assert back.PatientIdentityRemoved == "NO"
        assert s.recover_patient_identity(clean, key_path, cert_path).PatientID == PATIENT_ID


def test_backup_identities_is_an_alias_and_needs_a_certificate(tmp_path, folder, secret_file):
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s:
        assert Session.backup_identities is Session.preserve_identities
        with pytest.raises(ValueError, match="call enable_reversible_anonymization"):
            s.backup_identities()


def test_instances_anonymized_before_sealing_are_sealed_by_the_backup(tmp_path, folder, secret_file):
    _, cert_path = recipient().write(tmp_path / "broker")
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s:
        s.ingest(folder)
        s.apply_remediation()
        (before,) = s.patients[0].studies[0].series[0].instances
        assert "EncryptedAttributesSequence" not in before.header
        s.enable_reversible_anonymization(cert_path)
        backup = s.preserve_identities()
        assert backup.sealed == [1] and backup.pending == []
        (inst,) = s.patients[0].studies[0].series[0].instances
        assert "EncryptedAttributesSequence" in inst.header


def test_a_bad_certificate_is_refused(tmp_path, secret_file):
    expired = tmp_path / "expired.pem"
    from cryptography.hazmat.primitives import serialization

    expired.write_bytes(certificate(recipient().key, "old", days_before=400, days_after=-1)
                        .public_bytes(serialization.Encoding.PEM))
    with Session(tmp_path / "gantry.db", secret_file=secret_file) as s, \
            pytest.raises(SealingConfigError, match="expired.pem: certificate expired"):
        s.enable_reversible_anonymization(expired)
    assert s.sealer is None


def test_kept_text_that_looks_like_phi_is_reported_as_not_covered(tmp_path, secret_file):
    """Text the policy keeps is not changed, so not sealed: preserve_identities says so."""
    src = tmp_path / "in"
    src.mkdir()
    ds = identified_instance()
    ds.SeriesDescription = "call 555-123-4567"  # looks like PHI, is not the patient's identity
    save(ds, src / "ct.dcm")
    policy = tmp_path / "policy.yaml"
    policy.write_text("overrides: {SeriesDescription: keep}\n")
    _, cert_path = recipient().write(tmp_path / "broker")
    with Session(tmp_path / "gantry.db", secret_file=secret_file, policy=policy) as s:
        s.ingest(src)
        s.enable_reversible_anonymization(cert_path)
        backup = s.preserve_identities(s.scan_for_phi())
        assert [f.field_name for f in backup.not_covered] == ["SeriesDescription"]
