"""Verification of a de-identified instance, before anything leaves.

Fails (returns findings) when:
- re-running the policy over the output would still remove something (X), or replace a UID
  that is not a pseudonym (U);
- the original name, name parts, IDs, birth date, or (without Retain UIDs) the original study,
  series or instance UIDs occur anywhere in the encoded bytes;
- Patient Identity Removed is not YES.
"""

from __future__ import annotations

import re
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filewriter import write_dataset

from gantry_node.deid.engine import deidentify
from gantry_node.deid.identity import Identity
from gantry_node.deid.policy import Policy
from gantry_node.deid.pseudonyms import Keys
from gantry_node.deid.scan import Finding
from gantry_node.deid.values import as_list

# Bulk values searched only for long needles: a 3-byte ID matches random pixel bytes by chance.
_BULK = (0x7FE00010, 0x7FE00008, 0x7FE00009, 0x04000500)
_MIN_BULK_NEEDLE = 6
_VERIFY_KEYS = Keys(b"gantry-node verification pass, not a site secret")


def verify(ds: Dataset, policy: Policy, identity: Identity) -> list[Finding]:
    findings: list[Finding] = []
    if ds.get("PatientIdentityRemoved") != "YES":
        findings.append(Finding("(0012,0062)", "(0012,0062)", "PatientIdentityRemoved", "CS",
                                "Patient Identity Removed is not YES", "verify"))
    second = deidentify(ds, policy, _VERIFY_KEYS)
    for c in second.changes:
        if c.action == "X":
            findings.append(Finding(c.path, c.tag_text, c.keyword, c.vr,
                                    f"still present, policy removes it ({c.reason})", "verify", c.original))
        elif c.action == "U" and not _is_pseudonym(c.original) and "retain_uids" not in policy.options:
            findings.append(Finding(c.path, c.tag_text, c.keyword, c.vr,
                                    "UID not replaced by a pseudonym", "verify", c.original))
    findings += leaked_values(ds, identity, policy)
    return findings


def _is_pseudonym(value) -> bool:
    return all(str(v).startswith("2.25.") for v in as_list(value))


def leaked_values(ds: Dataset, identity: Identity, policy: Policy) -> list[Finding]:
    needles = identity.needles()
    if "retain_uids" not in policy.options:
        needles += [("original UID", u) for u in identity.uids]
    if not needles:
        return []
    meta = Dataset()
    bulk: list[bytes] = []
    for tag in list(ds.keys()):  # noqa: SIM118 -- iterating a Dataset yields elements, not tags
        if int(tag) in _BULK:
            value = ds.get_item(tag).value
            if isinstance(value, bytes):
                bulk.append(value)
        else:
            meta[tag] = ds.get_item(tag)
    buffer = BytesIO()
    write_dataset(_filebuf(buffer), meta)
    text = buffer.getvalue().lower()
    found: list[Finding] = []
    for what, value in needles:
        pattern = _needle_pattern(what, value)
        hit = pattern.search(text) is not None
        if not hit and len(value) >= _MIN_BULK_NEEDLE:
            hit = any(pattern.search(b.lower()) for b in bulk)
        if hit:
            found.append(Finding("(encoded bytes)", "", "", "", f"original {what} occurs in the output",
                                 "verify", value))
    return found


def _needle_pattern(what: str, value: str) -> re.Pattern[bytes]:
    """Names match as whole words ("Pre" is not in "PREDECESSOR"), dates as whole numbers,
    IDs and UIDs anywhere."""
    body = re.escape(value.lower().encode("utf-8", "replace"))
    if what.startswith("patient name"):
        return re.compile(rb"(?<![a-z])" + body + rb"(?![a-z])")
    if what == "birth date":
        return re.compile(rb"(?<![0-9])" + body + rb"(?![0-9])")
    if what == "original UID":
        return re.compile(rb"(?<![0-9.])" + body + rb"(?![0-9.])")
    return re.compile(body)


def _filebuf(buffer: BytesIO):
    from pydicom.filebase import DicomFileLike

    fp = DicomFileLike(buffer)
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    return fp
