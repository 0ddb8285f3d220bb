"""The original identity of an instance (held in memory only) and the free-text heuristics that
look for it, and for things that look like PHI, in text the policy keeps."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from gantry_node.engine.deid.matching import Matcher, Needle, fold, significant

# Attributes whose values identify the patient or the order directly.
ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "MedicalRecordLocator", "AdmissionID",
    "IssuerOfPatientID", "StudyID", "PatientInsurancePlanCodeSequence",
)
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
_ID_TAGS = tuple(tag_for_keyword(kw) for kw in ID_KEYWORDS)
_UID_TAGS = tuple(tag_for_keyword(kw) for kw in UID_KEYWORDS)
_PATIENT_NAME, _PATIENT_ID, _PATIENT_BIRTH_DATE = 0x00100010, 0x00100020, 0x00100030
_ISSUER_OF_PATIENT_ID, _OTHER_PATIENT_IDS_SEQUENCE = 0x00100021, 0x00101002

PATTERNS: dict[str, re.Pattern[str]] = {
    "phone number": re.compile(r"(?<![\w.])(?:\+?\d{1,3}[\s.-])?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?!\d)"),
    "street address": re.compile(
        r"\b\d{1,5}\s+(?:[A-Za-z]+\s){1,3}(?:street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|"
        r"drive|dr|court|way|place|pl|strasse|straße)\b\.?",
        re.IGNORECASE,
    ),
    "e-mail address": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b"),
    "date": re.compile(
        r"\b(?:19|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])\b"
        r"|\b(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)?\d{2}\b"
    ),
    "record number": re.compile(r"\b(?:MRN|MR#|ID#|patient id)[:#\s]*[A-Z0-9-]{4,}\b", re.IGNORECASE),
}


@dataclass(frozen=True)
class Identity:
    """Identifying values of one instance. Never logged, never written outside the sealed
    Encrypted Attributes Sequence; used to scan, clean and verify."""

    name: str = field(default="", repr=False)
    name_parts: tuple[str, ...] = field(default=(), repr=False)
    ids: tuple[str, ...] = field(default=(), repr=False)
    birth_date: str = field(default="", repr=False)
    uids: tuple[str, ...] = field(default=(), repr=False)
    patient_key: str = field(default="", repr=False)

    @classmethod
    def of(cls, ds: Dataset, not_identifying: Iterable[str] = ()) -> Identity:
        """The identity of `ds`. Words and phrases in `not_identifying` (a phantom's name,
        "TEST") are not looked for: a name component equal to one of them, or a word equal to
        one, is left out of the name parts; the whole name too when nothing else is left."""
        def get(tag: int, default=None):  # ds.get(keyword, default), by tag: no keyword lookup
            return ds[tag].value if tag in ds._dict else default

        name = str(get(_PATIENT_NAME, "") or "")
        parts = name_parts(name, not_identifying)
        if not parts and not_identifying and name.strip():
            name = ""  # every part is a phantom's word: the whole name identifies no one
        ids: set[str] = set()
        for tag in _ID_TAGS:
            value = get(tag)
            if value is None or isinstance(value, list) and not value:
                continue
            values = value if isinstance(value, list | tuple) else [value]
            ids.update(str(v).strip() for v in values if str(v).strip() and not isinstance(v, Dataset))
        for item in get(_OTHER_PATIENT_IDS_SEQUENCE, []) or []:
            if item.get("PatientID"):
                ids.add(str(item.PatientID).strip())
        uids = tuple(str(v) for v in (get(tag) for tag in _UID_TAGS) if v)
        birth = str(get(_PATIENT_BIRTH_DATE, "") or "").strip()
        patient_id = str(get(_PATIENT_ID, "") or "").strip()
        issuer = str(get(_ISSUER_OF_PATIENT_ID, "") or "").strip()
        # The date offset follows the patient: by ID (and issuer) where there is one.
        key = f"id:{issuer}:{patient_id}" if patient_id else f"name:{name}:{birth}"
        return cls(name.strip(), parts, tuple(sorted(ids)), birth, uids, key)

    def needles(self) -> list[tuple[str, str]]:
        """(what, value) pairs whose presence in output means the identity leaked."""
        out = [("patient name", self.name)] if len(self.name) >= 3 else []
        out += [("patient name part", p) for p in self.name_parts if significant(p)]
        out += [("patient or order id", i) for i in self.ids if len(i) >= 3]
        if len(self.birth_date) == 8:
            out += [("birth date", f) for f in date_forms(self.birth_date)]
        return out

    @cached_property
    def leak_matcher(self) -> Matcher:
        """Finds the needles (what verification looks for) in decoded text."""
        return _matcher(tuple(self.needles()))

    @cached_property
    def clean_matcher(self) -> Matcher:
        """Finds what the C action replaces: every name part, the IDs, the birth date."""
        needles = [("patient name part", p) for p in self.name_parts]
        needles += [("patient or order id", i) for i in self.ids if len(i) >= 3]
        if len(self.birth_date) == 8:
            needles += [("birth date", f) for f in date_forms(self.birth_date)]
        return _matcher(tuple(needles))

    def matches(self, text: str) -> Iterator[tuple[int, int, str]]:
        """Spans of `text` that carry this identity: (start, end, reason). Compared as text:
        NFKC and case folded, so any case and any character set match."""
        return self.clean_matcher.spans(text)


@lru_cache(maxsize=64)
def _matcher(needles: tuple[tuple[str, str], ...]) -> Matcher:
    """The matcher of these needles, built once per process for the few patients in hand (the
    instances of a series share it). A Matcher is not changed after it is built."""
    return Matcher(Needle(what, value) for what, value in needles)


def name_parts(name: str, not_identifying: Iterable[str] = ()) -> tuple[str, ...]:
    """The words of a person name, every component group (alphabetic, ideographic, phonetic)
    included. A part is a word with a letter: "0000" in a test patient's name is not something
    to look for."""
    ignored = {fold(w).strip() for w in not_identifying}
    words: set[str] = set()
    for component in re.split(r"[\^=]", name):
        if fold(component).strip() in ignored:
            continue
        words.update(w for w in re.split(r"[\s,.]+", component)
                     if len(w) >= 2 and re.search(r"[^\W\d_]", w) and fold(w) not in ignored)
    return tuple(sorted(words))


def date_forms(yyyymmdd: str) -> list[str]:
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:8]
    return [yyyymmdd, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}",
            f"{d}.{m}.{y}", f"{d}-{m}-{y}"]


def phi_spans(text: str, identity: Identity) -> list[tuple[int, int, str]]:
    """Every span of `text` that is the patient's identity or looks like PHI, merged."""
    spans = list(identity.matches(text))
    for reason, pattern in PATTERNS.items():
        spans += [(m.start(), m.end(), reason) for m in pattern.finditer(text)]
    spans.sort()
    merged: list[tuple[int, int, str]] = []
    for start, end, reason in spans:
        if merged and start <= merged[-1][1]:
            s, e, r = merged[-1]
            merged[-1] = (s, max(e, end), r)
        else:
            merged.append((start, end, reason))
    return merged


REDACTED = "***"


def clean_text(text: str, identity: Identity) -> tuple[str, list[str]]:
    """The C action on free text: identifying spans replaced; returns (text, reasons)."""
    spans = phi_spans(text, identity)
    if not spans:
        return text, []
    out, last = [], 0
    for start, end, _ in spans:
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out), sorted({r for _, _, r in spans})
