"""Which UIDs are the standard's own (DESIGN principle 9): those are never replaced, every other
UID is, wherever it sits.

The standard's own: every UID under the DICOM root 1.2.840.10008 (SOP classes, transfer
syntaxes, well-known frames of reference and SOP instances, context groups, the DCM coding
scheme: all of pydicom's UID dictionary is under it, and nobody else may issue UIDs there), and
the coding schemes PS3.16 Table 8-1 names by HL7 OIDs (SNOMED CT, LOINC, UCUM, RadLex...), which
a Coding Scheme UID (0008,010C) may carry. An original instance UID that someone put under the
DICOM root is kept by this rule; verification's search for the original study, series and
instance UIDs then quarantines the instance.

The tests take bytes as well as text, so a raw element of VR UI is checked without converting it.
"""

from __future__ import annotations

DICOM_ROOT = "1.2.840.10008."
# HL7's coding-system arc (2.16.840.1.113883.6.*: SNOMED CT .96, LOINC .1, UCUM .8, RadLex .256,
# ICD-10 .3, FMA .119, ...) holds code systems only, never an organization's instance UIDs; NCI
# Thesaurus is the one PS3.16 scheme outside it.
_STANDARD_PREFIXES = (DICOM_ROOT, "2.16.840.1.113883.6.")
_STANDARD_EXACT = frozenset({"2.16.840.1.113883.3.26.1.1"})
_STANDARD_PREFIXES_B = tuple(p.encode() for p in _STANDARD_PREFIXES)
_STANDARD_EXACT_B = frozenset(u.encode() for u in _STANDARD_EXACT)
PSEUDONYM_PREFIX = "2.25."


def is_standard(uid: str) -> bool:
    """Whether `uid` (stripped) is one of the standard's own UIDs, never replaced."""
    return uid.startswith(_STANDARD_PREFIXES) or uid in _STANDARD_EXACT


def needs_replacing(uid: str) -> bool:
    """Whether a UID value must be replaced by its pseudonym (empty values are left alone)."""
    uid = uid.strip().rstrip("\x00")
    return bool(uid) and not is_standard(uid)


def raw_all_standard(value: bytes | None) -> bool:
    """Whether every value of a raw UI element's bytes is empty or the standard's own."""
    if not value:
        return True
    for part in value.split(b"\\"):
        part = part.strip(b" \x00")
        if part and not (part.startswith(_STANDARD_PREFIXES_B) or part in _STANDARD_EXACT_B):
            return False
    return True


def is_pseudonym(uid: str) -> bool:
    """Whether `uid` has the form of a pseudonym (PS3.5 B.2 `2.25.` + a decimal integer); an
    original 2.25 UID has the same form: the byte search for the original UIDs catches those."""
    return uid.startswith(PSEUDONYM_PREFIX) and uid[5:].isdigit() and len(uid) <= 64
