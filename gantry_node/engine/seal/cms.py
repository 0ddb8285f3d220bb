"""Sealing the original identity as the standard defines it (PS3.15 E.1.2): the original values
go into the single item of Modified Attributes Sequence (0400,0550), that sequence is encoded in
Explicit VR Little Endian (one data element, no preamble, no file meta: as GDCM's gdcmanon does),
encrypted as CMS EnvelopedData to every recipient certificate (RSA key transport, AES-CBC), and
stored as Encrypted Content (0400,0520) in an item of Encrypted Attributes Sequence (0400,0500).

Pure functions: no files, no logging. Sealing needs only certificates; unsealing a private key.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator
from io import BytesIO
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from gantry_node.engine.errors import SafeMessage
from gantry_node.engine.seal import legacy
from gantry_node.engine.seal.recipients import candidate_certificates

T = TypeVar("T")

ALGORITHMS = {"aes256": algorithms.AES256, "aes128": algorithms.AES128}
DEFAULT_ALGORITHM = "aes256"

_SOP_INSTANCE_UID = 0x00080018
# CMS EnvelopedData has no integrity check, and a flipped ciphertext byte inside a binary value
# decrypts to plausible garbage. So after the Modified Attributes Sequence element comes Data Set
# Trailing Padding (whose value "has no significance" to other readers; gdcmanon reads only the
# first element) holding this prefix and a SHA-256 of the bytes before it: inside the encryption,
# so it reveals nothing, and unseal() refuses content whose digest does not match.
DIGEST_PREFIX = b"sha-256\x00"
_DIGEST_LENGTH = len(DIGEST_PREFIX) + 32
_TRAILER_HEADER = b"\xfc\xff\xfc\xffOB\x00\x00" + _DIGEST_LENGTH.to_bytes(4, "little")
_TRAILER_LENGTH = len(_TRAILER_HEADER) + _DIGEST_LENGTH
_SPECIFIC_CHARACTER_SET = 0x00080005


class SealError(SafeMessage, ValueError):
    """Sealing or unsealing failed. The message names the attribute or the cause, never a value."""


def seal(
    originals: Dataset, recipients: list[x509.Certificate], algorithm: str = DEFAULT_ALGORITHM,
    charset: str | list[str] | None = None,
) -> Dataset:
    """One item of Encrypted Attributes Sequence holding `originals`, readable by every recipient.
    `charset` is the Specific Character Set the original text values were in, if `originals`
    does not carry it."""
    if not recipients:
        raise SealError("no recipient certificate: sealing needs at least one")
    cipher = ALGORITHMS.get(algorithm)
    if cipher is None:
        raise SealError(f"unknown content encryption algorithm {algorithm!r} (use {' or '.join(ALGORITHMS)})")
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(encode_modified_attributes(originals, charset))
    builder = builder.set_content_encryption_algorithm(cipher)
    for cert in recipients:
        builder = builder.add_recipient(cert)
    der = builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    item = Dataset()
    item.EncryptedContentTransferSyntaxUID = ExplicitVRLittleEndian
    item.add_new(0x04000520, "OB", der)  # Encrypted Content
    return item


def make_sealer(
    recipients: list[x509.Certificate], algorithm: str = DEFAULT_ALGORITHM
) -> Callable[[Dataset, Dataset], None]:
    """The pipeline's seal stage: `sealer(deidentified, originals)` appends the sealed item."""
    if not recipients:
        raise SealError("no recipient certificate: sealing needs at least one")
    if algorithm not in ALGORITHMS:
        raise SealError(f"unknown content encryption algorithm {algorithm!r} (use {' or '.join(ALGORITHMS)})")
    recipients = list(recipients)

    def sealer(deidentified: Dataset, originals: Dataset) -> None:
        content = Dataset()  # a new data set: `originals` belongs to the caller
        for elem in originals:
            content.add(elem)
        if _SOP_INSTANCE_UID not in content and "SOPInstanceUID" in deidentified:
            # gdcmanon -d refuses a Modified Attributes item without SOP Instance UID; when the
            # UID was kept (Retain UIDs) its current value is the original one.
            content.SOPInstanceUID = deidentified.SOPInstanceUID
        charset = originals.get("SpecificCharacterSet") or deidentified.get("SpecificCharacterSet")
        item = seal(content, recipients, algorithm, charset)
        if "EncryptedAttributesSequence" not in deidentified:
            deidentified.EncryptedAttributesSequence = Sequence()
        deidentified.EncryptedAttributesSequence.append(item)

    return sealer


def encode_modified_attributes(originals: Dataset, charset: str | list[str] | None = None) -> bytes:
    """Modified Attributes Sequence with one item holding `originals`, as Explicit VR Little
    Endian bytes: one data element, the form gdcmanon writes and reads; then Data Set Trailing
    Padding (FFFC,FFFC) holding a SHA-256 of those bytes (see `DIGEST_PREFIX`).

    Real originals break VR rules (an LO of 122 characters, a UI that is a hash, a private
    creator with VR UV): they are sealed as they are, since recovery must give them back as
    they were. What is refused, naming the tag, is a value that cannot be written at all, or
    an item that would not read back with the same elements."""
    item = Dataset()
    for elem in originals:
        item.add(elem)
    charset = originals.get("SpecificCharacterSet") or charset
    if charset and _SPECIFIC_CHARACTER_SET not in item and not _is_default_charset(charset):
        # Items inherit the character set of the data set around them; here there is none, so the
        # item carries its own or a non-ASCII name would not survive.
        item.SpecificCharacterSet = charset
    try:
        body = _encode_item(item)
    except _LossyText as exc:
        # A value pydicom decoded with replacement characters (bytes invalid in the declared
        # character set) cannot go back into that set; UTF-8 holds every decoded value.
        if _SPECIFIC_CHARACTER_SET in originals:
            raise SealError(f"cannot encode the original attribute {exc.label} in the instance's "
                            "character set") from None
        item.SpecificCharacterSet = "ISO_IR 192"
        body = _encode_item(item)
    _check_reads_back(body, item)
    return body + _TRAILER_HEADER + DIGEST_PREFIX + hashlib.sha256(body).digest()


class _LossyText(Exception):
    def __init__(self, label: str):
        super().__init__(label)
        self.label = label


def _encode_item(item: Dataset) -> bytes:
    """The Modified Attributes Sequence holding `item`; _LossyText or SealError naming the tag
    when a value cannot be written as it is."""
    outer = Dataset()
    outer.ModifiedAttributesSequence = Sequence([item])
    try:
        body, lossy = _write(outer)
    except Exception:  # noqa: BLE001 -- the message would quote the value: name the tag only
        raise SealError(f"cannot encode the original attribute {_culprit(item)}") from None
    if lossy:
        raise _LossyText(_culprit(item))
    return body


def _write(ds: Dataset) -> tuple[bytes, bool]:
    """(Explicit VR Little Endian bytes of `ds`, whether pydicom replaced characters it could not
    encode). pydicom's other warnings (a value longer than its VR allows, an invalid UI) are
    about the original's conformance, which is sealed as it is; they quote values, so none shows."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_dataset(fp, ds)
    lossy = any(str(w.message).startswith("Failed to encode") for w in caught)
    return fp.getvalue(), lossy


def _culprit(item: Dataset) -> str:
    """The first element of `item` that cannot be written alone, losslessly (for the message)."""
    charset = item.get("SpecificCharacterSet")
    for tag in list(item.keys()):  # noqa: SIM118
        probe = Dataset()
        if charset is not None:
            probe.SpecificCharacterSet = charset
        try:
            probe.add(item[tag])
            if _write(probe)[1]:
                return _tag_label(tag)
        except Exception:  # noqa: BLE001
            return _tag_label(tag)
    return "(unknown element)"


def _tag_label(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _check_reads_back(body: bytes, item: Dataset) -> None:
    """Recovery reads the sealed bytes the way `decode_modified_attributes` does with a digest:
    refuse to seal an item that would not read back with the same elements."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = read_dataset(BytesIO(body), is_implicit_VR=False, is_little_endian=True)
            back = _single_item(list(ds.keys()), ds.get("ModifiedAttributesSequence"))
            _decode_what_decodes([back])
    except Exception:  # noqa: BLE001 -- any failure: the item is not readable
        raise SealError("the sealed original attributes do not read back as one "
                        "Modified Attributes Sequence item") from None
    missing = [tag for tag in item.keys() if tag not in back]  # noqa: SIM118
    if missing or len(back) != len(item):
        label = _tag_label(missing[0]) if missing else "(an extra element)"
        raise SealError(f"the sealed original attribute {label} does not read back")


def _is_default_charset(charset) -> bool:
    values = [charset] if isinstance(charset, str) else list(charset)
    return all(v in ("", "ISO_IR 6", "iso8859", "ISO 2022 IR 6") for v in values)


def decode_modified_attributes(plaintext: bytes) -> Dataset:
    """The single item of Modified Attributes Sequence from decrypted bytes, decoded and checked;
    SealError when the bytes are not that (a wrong key or tampered content).

    Content with our digest is proven intact, so it is read as it was written, whatever the
    original's VR problems (an LO of 122 characters, a UI that is a hash, a private creator read
    as UV): pydicom's warnings about such values are not corruption, and an element pydicom
    cannot decode at all stays a raw element, its bytes as sealed. Content without a digest
    (sealed by another tool) is read strictly: a warning there may be garbage from a wrong key."""
    body, digest = split_digest(plaintext)
    if digest is None:
        return _decode_strict(body)
    if hashlib.sha256(body).digest() != digest:
        raise SealError("decrypted content does not match its digest (tampered or corrupt content)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # validation warnings quote values; the digest vouches
            ds = read_dataset(BytesIO(body), is_implicit_VR=False, is_little_endian=True)
            tags = list(ds.keys())
            seq = ds.get("ModifiedAttributesSequence")
            _decode_what_decodes(seq or [])
    except Exception:  # noqa: BLE001 -- intact but unreadable: a bug of ours, not the broker's key
        raise SealError("decrypted content matches its digest but cannot be read as a "
                        "Modified Attributes Sequence") from None
    return _single_item(tags, seq)


def _decode_strict(body: bytes) -> Dataset:
    from gantry_node.engine.seal.validate import check_values

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # pydicom warns, then guesses, on a garbled VR or length
            ds = read_dataset(BytesIO(body), is_implicit_VR=False, is_little_endian=True)
            tags = list(ds.keys())
            seq = ds.get("ModifiedAttributesSequence")
            _decode_all(seq or [])
    except Exception:  # noqa: BLE001 -- garbage from a wrong key or tampered content
        raise SealError("decrypted content is not a DICOM data set "
                        "(wrong private key, or tampered content)") from None
    item = _single_item(tags, seq)
    check_values(item)  # sealed by another tool: no digest, so check what can be checked
    return item


def _single_item(tags: list, seq) -> Dataset:
    if tags != [0x04000550] or seq is None or len(seq) != 1:
        raise SealError("decrypted content is not one Modified Attributes Sequence item "
                        "(wrong private key, or tampered content)")
    return seq[0]


def _decode_all(items) -> None:
    for item in items:
        for elem in item:  # iterating decodes every element
            if elem.VR == "SQ":
                _decode_all(elem.value or [])


def _decode_what_decodes(items) -> None:
    """Decode every element that pydicom can decode. One sealed as UN that pydicom would decode
    with its dictionary's VR (a Siemens private element of 2 bytes that pydicom's private
    dictionary says is FD) stays UN, its bytes as sealed; any other stays raw."""
    for item in items:
        for tag in list(item.keys()):  # noqa: SIM118 -- iterating a Dataset decodes, raising
            try:
                elem = item[tag]
            except Exception:  # noqa: BLE001 -- kept as its sealed bytes
                raw = item.get_item(tag)
                if isinstance(raw, RawDataElement) and raw.VR == "UN":
                    elem = DataElement(tag, "UN", raw.value)
                    elem.VR = "UN"  # not the dictionary's VR, which the bytes do not fit
                    item[tag] = elem
                continue
            if elem.VR == "SQ":
                _decode_what_decodes(elem.value or [])


def split_digest(plaintext: bytes) -> tuple[bytes, bytes | None]:
    """(the Modified Attributes Sequence bytes, our SHA-256 of them or None if not sealed by us)."""
    trailer = plaintext[-_TRAILER_LENGTH:]
    if len(plaintext) > _TRAILER_LENGTH and trailer.startswith(_TRAILER_HEADER + DIGEST_PREFIX):
        return plaintext[:-_TRAILER_LENGTH], trailer[-32:]
    return plaintext, None


def decrypt_content(
    der: bytes, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate | None = None
) -> bytes:
    """Decrypt CMS EnvelopedData DER with the recipient's key. Without the certificate, every
    RSA key-transport recipient in the message is tried with the key (as OpenSSL does)."""
    return open_content(der, private_key, certificate, lambda plaintext: plaintext)


def open_content(der: bytes, private_key, certificate, decode: Callable[[bytes], T]) -> T:
    """Decrypt and `decode`. Trying recipients with the key alone, a wrong entry usually fails the
    padding check, but RSA PKCS #1 v1.5 decryption with implicit rejection can hand back a random
    content key that passes it; so a candidate counts only once its plaintext decodes."""
    last = "no RSA key-transport recipient in the message"
    for plaintext in _plaintexts(der, private_key, certificate):
        if isinstance(plaintext, str):  # why this candidate failed
            last = plaintext
            continue
        try:
            return decode(plaintext)
        except SealError as exc:
            last = str(exc)
    prefix = "" if last.startswith("decrypted") else "cannot decrypt Encrypted Content: "
    raise SealError(prefix + last)


def _plaintexts(der: bytes, private_key, certificate) -> Iterator[bytes | str]:
    """Candidate plaintexts, or the reason a candidate failed (a str)."""
    try:
        algorithm = legacy.content_algorithm(der)
    except Exception:  # noqa: BLE001 -- any parse failure: not a usable CMS message
        raise SealError("cannot decrypt Encrypted Content: not a valid CMS message (truncated or corrupt)") from None
    if algorithm in legacy.LEGACY:  # AES-192, 3DES: what pkcs7_decrypt_der does not do
        try:
            yield from legacy.candidate_plaintexts(der, private_key, certificate)
        except (legacy.UnsupportedContent, legacy.NotARecipient) as exc:
            raise SealError(f"cannot decrypt Encrypted Content: {exc}") from None
        yield "wrong private key, or tampered content"
        return
    if algorithm not in legacy.NATIVE:
        raise SealError(f"cannot decrypt Encrypted Content: content encryption {algorithm} is not AES or 3DES CBC")
    certs = [certificate] if certificate is not None else candidate_certificates(der, private_key)
    for cert in certs:
        try:
            yield pkcs7.pkcs7_decrypt_der(der, cert, private_key, [])
        except (ValueError, UnsupportedAlgorithm) as exc:
            yield _decrypt_reason(str(exc))


def _decrypt_reason(text: str) -> str:
    lowered = text.lower()
    if "no recipient" in lowered or "recipient" in lowered and "match" in lowered:
        return "this key/certificate is not among the recipients"
    if "padding" in lowered:
        return "wrong private key, or tampered content"
    if "parse" in lowered or "asn1" in lowered:
        return "not a valid CMS message (truncated or corrupt)"
    return "wrong private key, or corrupt content"


def unseal(
    ds: Dataset, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate | None = None
) -> Dataset:
    """The original attributes sealed in `ds` (the item of Modified Attributes Sequence).

    Each item of Encrypted Attributes Sequence is tried, the last (newest) first; the first one
    this key opens wins. SealError when none does."""
    unsealed = unseal_item(ds, private_key, certificate)
    return unsealed[1]


def unseal_item(
    ds: Dataset, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate | None = None
) -> tuple[int, Dataset]:
    """(index of the Encrypted Attributes Sequence item used, the original attributes)."""
    items = ds.get("EncryptedAttributesSequence")
    if not items:
        raise SealError("no Encrypted Attributes Sequence (0400,0500): nothing sealed in this instance")
    errors: list[str] = []
    for index in reversed(range(len(items))):
        item = items[index]
        try:
            return index, _open_item(item, private_key, certificate)
        except SealError as exc:
            errors.append(str(exc))
    # one item: its own reason; several: the reason for the newest
    raise SealError(errors[0])


def _open_item(item: Dataset, private_key, certificate) -> Dataset:
    syntax = str(item.get("EncryptedContentTransferSyntaxUID", "") or "")
    if syntax != ExplicitVRLittleEndian:
        raise SealError(f"Encrypted Content Transfer Syntax UID (0400,0510) is {syntax or 'missing'}; "
                        "only Explicit VR Little Endian is supported")
    content = item.get("EncryptedContent")
    if not isinstance(content, bytes) or not content:
        raise SealError("Encrypted Content (0400,0520) is missing or empty")
    return open_content(der_without_padding(content), private_key, certificate, decode_modified_attributes)


def der_without_padding(content: bytes) -> bytes:
    """The DER message without the zero byte that pads an OB value to even length."""
    if len(content) < 2 or content[0] != 0x30:
        return content
    first = content[1]
    if first < 0x80:
        header, length = 2, first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(content) < 2 + count:
            return content  # indefinite (BER) or absurd length: leave it to the parser
        header, length = 2 + count, int.from_bytes(content[2 : 2 + count], "big")
    end = header + length
    if end < len(content) and not content[end:].strip(b"\x00"):
        return content[:end]
    return content
