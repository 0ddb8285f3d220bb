"""Finding the recipients of a CMS EnvelopedData when only the private key is at hand.

`cryptography`'s pkcs7_decrypt_der picks the RecipientInfo by the issuer and serial number of a
certificate. The honest broker may hold just the key (gdcmanon -d -k and openssl cms -decrypt
-inkey need no certificate), so for each key-transport recipient in the message a stand-in
certificate is made: the recipient's issuer and serial, the key's own public key. It is never
trusted for anything but that lookup.
"""

from __future__ import annotations

import datetime

from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


class NotEnvelopedData(ValueError):
    """The bytes are not a CMS EnvelopedData (truncated, corrupt, or something else)."""


def recipient_ids(der: bytes) -> list[tuple[asn1_x509.Name, int]]:
    """(issuer, serial number) of each key-transport recipient identified by issuer and serial."""
    try:
        info = asn1_cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "enveloped_data":
            raise NotEnvelopedData(f"CMS content type is {info['content_type'].native}, not enveloped data")
        out = []
        for recipient in info["content"]["recipient_infos"]:
            if recipient.name != "ktri":
                continue
            rid = recipient.chosen["rid"]
            if rid.name == "issuer_and_serial_number":
                out.append((rid.chosen["issuer"], rid.chosen["serial_number"].native))
        return out
    except NotEnvelopedData:
        raise
    except Exception:  # noqa: BLE001 -- any parse failure means the same thing here
        raise NotEnvelopedData("not a valid CMS message (truncated or corrupt)") from None


def candidate_certificates(der: bytes, private_key: rsa.RSAPrivateKey) -> list[x509.Certificate]:
    """One stand-in certificate per recipient of `der`, each carrying `private_key`'s public key."""
    from gantry_node.engine.seal.cms import SealError

    try:
        ids = recipient_ids(der)
    except NotEnvelopedData as exc:
        raise SealError(f"cannot decrypt Encrypted Content: {exc}") from None
    if not ids:
        return []
    template = _template(private_key)
    certs = []
    for issuer, serial in ids:
        cert = asn1_x509.Certificate.load(template)
        tbs = cert["tbs_certificate"]
        tbs["issuer"] = issuer.copy()
        tbs["serial_number"] = serial
        certs.append(x509.load_der_x509_certificate(cert.dump(force=True)))
    return certs


def _template(private_key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recipient lookup")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)
