"""Helpers for the sealing tests: throwaway RSA recipients, a small instance with an identity at
several depths, and runners for the independent implementations (gdcmanon, openssl cms)."""

from __future__ import annotations

import datetime
import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

PATIENT_NAME = "Doe^Jane^Quinn"
PATIENT_ID = "MRN-4471902"
ACCESSION = "ACC99812"
BIRTH_DATE = "19610723"


@dataclass(frozen=True)
class Recipient:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    def write(self, directory: Path, stem: str = "broker") -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / f"{stem}-key.pem", directory / f"{stem}-cert.pem"
        key_path.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        key_path.chmod(0o600)
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return key_path, cert_path


def certificate(key, name: str, *, days_before: float = 1, days_after: float = 30,
                signer=None) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gantry-node tests")])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=-days_before))
        .not_valid_after(now + datetime.timedelta(days=days_after))
        .sign(signer or key, hashes.SHA256())
    )


@functools.cache
def recipient(name: str = "broker-a", bits: int = 2048) -> Recipient:
    """A throwaway recipient (cached per name: RSA key generation is the slow part)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return Recipient(key, certificate(key, name))


def ec_certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return certificate(key, "ec-recipient")


def identified_instance() -> Dataset:
    """pydicom's CT_small with a fuller identity: nested accession and IDs, a private tag."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = BIRTH_DATE
    ds.AccessionNumber = ACCESSION
    request = Dataset()
    request.AccessionNumber = ACCESSION
    request.RequestedProcedureID = "RP-778812"
    ds.RequestAttributesSequence = Sequence([request])
    ds.add_new(0x00310010, "LO", "GANTRY TEST")
    ds.add_new(0x00311001, "LO", "scanner note for " + PATIENT_ID)
    return ds


def run_tool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*map(str, args)], capture_output=True, timeout=timeout)


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path
