"""Decrypting the content algorithms `cryptography`'s CMS support does not: AES-192-CBC and
Triple-DES-CBC. PS3.15 E.1.2 asks a re-identifier to decrypt AES at every key length and 3DES, and
gdcmanon -e offers --aes192 and --des3. The message is read with asn1crypto; every cryptographic
step (RSA PKCS #1 v1.5 key transport, the block cipher, the padding) is `cryptography`'s."""

from __future__ import annotations

from collections.abc import Iterator

from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding as block_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# What cryptography.hazmat.primitives.serialization.pkcs7 decrypts itself.
NATIVE = {"aes128_cbc", "aes256_cbc"}
LEGACY = {"aes192_cbc", "tripledes_3key"}


class UnsupportedContent(ValueError):
    """A content encryption the standard does not allow (or that is not CBC)."""


class NotARecipient(ValueError):
    """The certificate given names none of the message's recipients."""


def content_algorithm(der: bytes) -> str:
    """The content encryption algorithm's name (asn1crypto's), e.g. "aes256_cbc"."""
    info = asn1_cms.ContentInfo.load(der, strict=True)
    return info["content"]["encrypted_content_info"]["content_encryption_algorithm"]["algorithm"].native


def candidate_plaintexts(
    der: bytes, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate | None = None
) -> Iterator[bytes]:
    """Plaintext for each key-transport recipient the key opens (the one of `certificate` only,
    if given). More than one can come out: a wrong entry may yield a random key that passes the
    padding check, so the caller keeps the first whose plaintext decodes."""
    info = asn1_cms.ContentInfo.load(der, strict=True)
    enveloped = info["content"]
    encrypted = enveloped["encrypted_content_info"]
    algorithm = encrypted["content_encryption_algorithm"]
    if algorithm["algorithm"].native not in LEGACY | NATIVE:
        raise UnsupportedContent(f"content encryption {algorithm['algorithm'].native} is not AES or 3DES CBC")
    ciphertext = encrypted["encrypted_content"].native
    if not ciphertext:
        raise UnsupportedContent("no encrypted content in the CMS message")
    matched = 0
    for recipient in enveloped["recipient_infos"]:
        if recipient.name != "ktri":
            continue
        ktri = recipient.chosen
        if certificate is not None and not _names(ktri, certificate):
            continue
        matched += 1
        if ktri["key_encryption_algorithm"]["algorithm"].native != "rsaes_pkcs1v15":
            continue
        try:
            key = private_key.decrypt(ktri["encrypted_key"].native, padding.PKCS1v15())
        except ValueError:
            continue
        if len(key) != algorithm.key_length:
            continue
        plaintext = _decrypt(algorithm.encryption_cipher, key, algorithm.encryption_iv, ciphertext)
        if plaintext is not None:
            yield plaintext
    if certificate is not None and not matched:
        raise NotARecipient("this key/certificate is not among the recipients")


def _names(ktri, certificate: x509.Certificate) -> bool:
    rid = ktri["rid"]
    if rid.name != "issuer_and_serial_number":
        return False
    issuer = certificate.issuer.public_bytes()
    return rid.chosen["serial_number"].native == certificate.serial_number and rid.chosen["issuer"].dump() == issuer


def _decrypt(cipher_name: str, key: bytes, iv: bytes, ciphertext: bytes) -> bytes | None:
    cipher = algorithms.AES(key) if cipher_name == "aes" else TripleDES(key)
    block = cipher.block_size
    if len(ciphertext) % (block // 8):
        return None
    decryptor = Cipher(cipher, modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = block_padding.PKCS7(block).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        return None
