"""Re-identification by the honest broker (PS3.15 E.1.2, re-identifier):

1. decrypt one Encrypted Content of Encrypted Attributes Sequence with the recipient's key and
   decode it with its Encrypted Content Transfer Syntax UID;
2. move every attribute of the single Modified Attributes Sequence item into the main data set,
   replacing the dummies (the originals are whole top-level elements, so nested values come back
   with their sequence);
3. Patient Identity Removed = NO (unless the original's own value was sealed: that comes back);
   De-identification Method and its Code Sequence removed.

The item used is removed too (as gdcmanon -d removes the sequence): once restored, the identity
is in the clear and the ciphertext says nothing more. Other items (sealed by an earlier
de-identification, to other recipients) stay. The input data set is not modified.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gantry_node.engine.seal.cms import unseal_item

# Markers the de-identifier set that describe the de-identified state, not the original.
_REMOVED_ON_RESTORE = ("DeidentificationMethod", "DeidentificationMethodCodeSequence")
_TEMPORAL_MARKER = "LongitudinalTemporalInformationModified"
_IDENTITY_REMOVED = 0x00120062
_SPECIFIC_CHARACTER_SET = 0x00080005

SUMMARY_FIELDS = (
    ("PatientName", "patient name"),
    ("PatientID", "patient ID"),
    ("IssuerOfPatientID", "issuer of patient ID"),
    ("OtherPatientIDs", "other patient IDs"),
    ("PatientBirthDate", "birth date"),
    ("PatientSex", "sex"),
    ("AccessionNumber", "accession number"),
    ("StudyID", "study ID"),
    ("StudyDate", "study date"),
    ("SeriesDate", "series date"),
    ("AcquisitionDate", "acquisition date"),
    ("ContentDate", "content date"),
    ("StudyInstanceUID", "study instance UID"),
    ("SeriesInstanceUID", "series instance UID"),
    ("SOPInstanceUID", "SOP instance UID"),
)


@dataclass
class Recovered:
    dataset: Dataset = field(repr=False)  # PHI: never logged
    restored: list[str]  # keywords (or tags) of the attributes put back: no values


def recover(ds: Dataset, private_key: rsa.RSAPrivateKey, certificate: x509.Certificate | None = None) -> Recovered:
    """A re-identified copy of `ds`. SealError (from gantry_node.engine.seal.cms) when it cannot be."""
    index, originals = unseal_item(ds, private_key, certificate)
    restored = []
    with warnings.catch_warnings():
        # Copying re-validates values; real originals break VR rules (an LO of 122 characters)
        # and pydicom's warnings quote the value.
        warnings.simplefilter("ignore")
        out = copy.deepcopy(ds)
        for tag in originals.keys():  # noqa: SIM118 -- get_item: an undecodable element stays raw bytes
            if tag == _SPECIFIC_CHARACTER_SET and tag in out:
                # The item's own encoding (de-identification never changes the instance's): the
                # restored values are text already, and the instance's other elements are still
                # bytes in the instance's character set, which must stay.
                continue
            out[tag] = copy.deepcopy(originals.get_item(tag))
            restored.append(keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})")
    if _IDENTITY_REMOVED not in originals:
        # An original that was already de-identified keeps its YES (sealed with the markers).
        out.PatientIdentityRemoved = "NO"
    for keyword in _REMOVED_ON_RESTORE:
        if keyword in out and keyword not in originals:
            del out[keyword]
    if _TEMPORAL_MARKER in out and _TEMPORAL_MARKER not in originals:
        # It described the de-identified dates; the original dates are back.
        del out[_TEMPORAL_MARKER]
    items = out.EncryptedAttributesSequence
    del items[index]
    if not len(items):
        del out.EncryptedAttributesSequence
    _refresh_file_meta(out)
    return Recovered(out, restored)


def _refresh_file_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID


def identity_summary(ds: Dataset) -> list[tuple[str, str]]:
    """(label, value) of the identifying attributes of a (re-identified) data set, for the
    honest broker's terminal. PHI: for `recover --show` only, never for logs."""
    out = []
    for keyword, label in SUMMARY_FIELDS:
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        text = "\\".join(str(v) for v in value) if isinstance(value, list | tuple | MultiValue) else str(value)
        out.append((label, text))
    for i, item in enumerate(ds.get("OtherPatientIDsSequence") or []):
        if item.get("PatientID"):
            out.append((f"other patient ID [{i}]", str(item.PatientID)))
    return out
