"""Recipient certificates are refused with a message naming the file; `keys init`; the sealing
section of the node's configuration."""

from __future__ import annotations

import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gantry_node.engine.seal import CertificateError, SealingConfigError, load_recipient, parse_sealing_section
from gantry_node.engine.seal.certs import CERT_FILE, KEY_FILE
from tests.support.seal import certificate, ec_certificate, recipient


def write_pem(path, cert):
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_a_valid_rsa_certificate_loads(tmp_path):
    path = write_pem(tmp_path / "ok.pem", recipient().cert)
    assert load_recipient(path).serial_number == recipient().cert.serial_number


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: certificate(recipient().key, "old", days_before=400, days_after=-10), "certificate expired on"),
        (lambda: certificate(recipient().key, "future", days_before=-10, days_after=400), "not valid yet"),
        (ec_certificate, "not RSA"),
    ],
    ids=["expired", "not-yet-valid", "not-rsa"],
)
def test_unusable_certificates_are_refused_naming_the_file(tmp_path, make, message):
    path = write_pem(tmp_path / "recipient.pem", make())
    with pytest.raises(CertificateError, match=message) as err:
        load_recipient(path)
    assert str(err.value).startswith(str(path))


def test_short_rsa_key_is_refused(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = write_pem(tmp_path / "short.pem", certificate(key, "short"))
    with pytest.raises(CertificateError, match="1024 bits is too short"):
        load_recipient(path)


def test_unreadable_or_not_a_certificate_is_refused(tmp_path):
    missing = tmp_path / "missing.pem"
    with pytest.raises(CertificateError, match=f"{missing}: cannot read the certificate"):
        load_recipient(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateError, match=f"{garbage}: not an X.509 certificate"):
        load_recipient(garbage)
    key_pem, cert_pem = recipient().write(tmp_path, "k")
    with pytest.raises(CertificateError, match=f"{key_pem}: holds a private key"):
        load_recipient(key_pem)
    combined = tmp_path / "combined.pem"
    combined.write_bytes(cert_pem.read_bytes() + key_pem.read_bytes())
    with pytest.raises(CertificateError, match="the node must be given the certificate only"):
        load_recipient(combined)


def test_config_section(tmp_path):
    good = write_pem(tmp_path / "good.pem", recipient().cert)
    other = write_pem(tmp_path / "other.pem", recipient("broker-b").cert)
    assert parse_sealing_section(None, None, "node.yaml") is None
    assert parse_sealing_section([], None, "node.yaml") is None
    cfg = parse_sealing_section([str(good), "other.pem"], {"algorithm": "AES128"}, "node.yaml", base=tmp_path)
    assert cfg.algorithm == "aes128"
    assert cfg.certificate_paths == (good, other)
    assert len(cfg.recipients) == 2 and callable(cfg.sealer())
    assert parse_sealing_section(str(good), None, "node.yaml").algorithm == "aes256"


@pytest.mark.parametrize(
    ("certificates", "reversible", "message"),
    [
        (["missing.pem"], None, r"node.yaml: certificates\[0\]: .*missing.pem: cannot read"),
        (["good.pem", "expired.pem"], None, r"node.yaml: certificates\[1\]: .*expired.pem: certificate expired"),
        (["ec.pem"], None, r"certificates\[0\]: .*not RSA"),
        (["good.pem"], {"algorithm": "des3"}, r"reversible.algorithm: 'des3' is not one of aes256, aes128"),
        (["good.pem"], {"algoritm": "aes128"}, r"reversible: unknown key\(s\) algoritm"),
        (["good.pem"], "aes128", r"reversible: must be a mapping"),
        (None, {"algorithm": "aes128"}, r"reversible: is set but certificates: is empty"),
        ({"a": 1}, None, r"certificates: must be a list"),
        ([""], None, r"certificates\[0\]: must be a file path"),
    ],
)
def test_config_errors_name_the_key(tmp_path, certificates, reversible, message):
    write_pem(tmp_path / "good.pem", recipient().cert)
    write_pem(tmp_path / "expired.pem", certificate(recipient().key, "old", days_before=400, days_after=-10))
    write_pem(tmp_path / "ec.pem", ec_certificate())
    with pytest.raises(SealingConfigError, match=message):
        parse_sealing_section(certificates, reversible, "node.yaml", base=tmp_path)


def test_keys_init_writes_a_0600_key_and_a_usable_certificate(tmp_path, run_cli):
    target = tmp_path / "broker"
    proc = run_cli("keys", "init", target)
    assert proc.returncode == 0, proc.stderr
    assert "belongs to the honest broker, not on the node" in proc.stdout
    key_path, cert_path = target / KEY_FILE, target / CERT_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = load_recipient(cert_path)
    assert cert.public_key().key_size == 3072
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert b"PRIVATE KEY" not in (proc.stdout + proc.stderr).encode()

    again = run_cli("keys", "init", target)
    assert again.returncode == 2 and "already exists; not overwritten" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize("marker", ["gantry.db", "inbox"])
def test_keys_init_refuses_the_node_data_directory(tmp_path, run_cli, marker):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / marker).mkdir() if marker == "inbox" else (data_dir / marker).write_bytes(b"")
    proc = run_cli("keys", "init", data_dir)
    assert proc.returncode == 2
    assert "looks like the node's data directory" in proc.stderr and "Traceback" not in proc.stderr
    assert not (data_dir / KEY_FILE).exists() and not (data_dir / CERT_FILE).exists()
