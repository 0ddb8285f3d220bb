"""Recipient certificates (the honest broker's public half) and the private key that opens what
was sealed to them; plus a key pair for trying it out (`gantry-node keys init`)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

MIN_RSA_BITS = 2048
KEY_BITS = 3072
KEY_FILE = "honest-broker-key.pem"
CERT_FILE = "honest-broker-cert.pem"
# What the node's data directory looks like: a private key must never be written there.
DATA_DIR_MARKERS = ("gantry.db", "inbox")

BROKER_REMINDER = (
    "In production the private key belongs to the honest broker, not on the node: give the node "
    "only the certificate; keep the key offline where re-identification is authorized."
)


class CertificateError(ValueError):
    """A certificate or key that cannot be used; the message names the file."""


def load_recipient(path: str | Path, now: datetime.datetime | None = None) -> x509.Certificate:
    """A recipient certificate from a PEM (or DER) file, refused unless readable, an X.509
    certificate, currently valid and carrying an RSA key of at least 2048 bits."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read the certificate: {exc.strerror or exc}") from None
    if b"PRIVATE KEY-----" in data:
        raise CertificateError(f"{path}: holds a private key; the node must be given the certificate only "
                               "(the key belongs to the honest broker)")
    try:
        cert = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except ValueError:
        raise CertificateError(f"{path}: not an X.509 certificate (PEM or DER)") from None
    now = now or datetime.datetime.now(datetime.UTC)
    if now < cert.not_valid_before_utc:
        start = cert.not_valid_before_utc
        raise CertificateError(f"{path}: certificate is not valid yet (valid from {start:%Y-%m-%d %H:%M} UTC)")
    if now > cert.not_valid_after_utc:
        raise CertificateError(f"{path}: certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        kind = type(key).__name__.removeprefix("_").replace("PublicKey", "") or "non-RSA"
        raise CertificateError(f"{path}: certificate key is {kind}, not RSA (PS3.15 E.1.2 needs RSA key transport)")
    if key.key_size < MIN_RSA_BITS:
        raise CertificateError(f"{path}: RSA key of {key.key_size} bits is too short (at least {MIN_RSA_BITS})")
    return cert


def load_recipients(paths: list[str | Path], now: datetime.datetime | None = None) -> list[x509.Certificate]:
    if not paths:
        raise CertificateError("no recipient certificate given")
    return [load_recipient(p, now) for p in paths]


def load_private_key(path: str | Path) -> rsa.RSAPrivateKey:
    """The honest broker's RSA private key (PEM, unencrypted, or DER)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read the private key: {exc.strerror or exc}") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if b"-----BEGIN" in data
               else serialization.load_der_private_key(data, password=None))
    except TypeError:
        raise CertificateError(f"{path}: the private key is encrypted; decrypt it first "
                               "(openssl pkey -in KEY -out PLAIN)") from None
    except ValueError:
        raise CertificateError(f"{path}: not a private key (PEM or DER)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError(f"{path}: not an RSA private key")
    return key


def load_certificate(path: str | Path) -> x509.Certificate:
    """A certificate for choosing the recipient when decrypting; no validity check (an expired
    certificate still names the recipient of what was sealed while it was valid)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"{path}: cannot read the certificate: {exc.strerror or exc}") from None
    try:
        return (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                else x509.load_der_x509_certificate(data))
    except ValueError:
        raise CertificateError(f"{path}: not an X.509 certificate (PEM or DER)") from None


def looks_like_data_dir(directory: Path) -> bool:
    return any((directory / marker).exists() for marker in DATA_DIR_MARKERS)


def init_keys(directory: str | Path, common_name: str = "gantry-node honest broker (test)",
              days: int = 365) -> tuple[Path, Path]:
    """Write an RSA key pair and a self-signed certificate into `directory`: (key, certificate).
    Refuses the node's data directory and existing files; the key file is created 0600."""
    directory = Path(directory)
    if looks_like_data_dir(directory):
        raise CertificateError(f"{directory}: looks like the node's data directory (has "
                               f"{' or '.join(DATA_DIR_MARKERS)}); a private key must not be kept there")
    key_path, cert_path = directory / KEY_FILE, directory / CERT_FILE
    for path in (key_path, cert_path):
        if path.exists():
            raise CertificateError(f"{path}: already exists; not overwritten")
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_new(key_path, key_pem, 0o600)
    try:
        _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)  # both or neither
        raise
    return key_path, cert_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` with `mode` from the start (O_EXCL: never over an existing file, never a
    moment with wider permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
