"""Verification of a de-identified instance, before anything leaves.

Fails (returns findings) when:
- an element the policy removes is still there, at any depth: a Table E.1-1 attribute whose
  action is X, a private element that is not allowed, an overlay or curve group;
- a UID, at any depth and in any element, that is neither the standard's own (uids.py) nor a
  pseudonym (2.25 form), unless Retain UIDs is on;
- a public element the data dictionary does not define (the engine removes them);
- SOP Class, SOP Instance, Study, Series or (when present) Frame of Reference UID is not one
  valid UID (a single value, PS3.5 9.1 syntax, at most 64 characters), or the SOP Class UID is
  not the standard's (the clean copy could not be sent or read);
- the original name, name parts, IDs, birth date, or (without Retain UIDs) the original study,
  series or instance UIDs occur anywhere in the encoded bytes (each value encoded in every
  character set the instance declares, and UTF-8 and Latin-1), or in any decoded text value
  (compared as text: NFKC, case folded; gantry_node.engine.deid.matching);
- Patient Identity Removed is not YES.

The structural check uses the same rule tables and decisions as the engine (profile.py), but
only looks: it builds nothing, so it is cheap enough to run on every instance.
"""

from __future__ import annotations

import os
import re

from pydicom.datadict import DicomDictionary, dictionary_has_tag, dictionary_keyword, mask_match
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from gantry_node.engine.deid import profile
from gantry_node.engine.deid.identity import Identity
from gantry_node.engine.deid.matching import byte_forms, python_encodings
from gantry_node.engine.deid.policy import OverrideKey, Policy, public_overrides
from gantry_node.engine.deid.scan import Finding
from gantry_node.engine.deid.uids import is_pseudonym, is_standard, raw_all_standard
from gantry_node.engine.deid.values import TEXT_VRS, as_list
from gantry_node.engine.encoding import Encoded, encode_parts

# Bulk values (pixels, ciphertext) are searched only for long needles: a 3-byte ID matches
# random pixel bytes by chance.
_BULK_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009, 0x04000520)
_MIN_BULK_NEEDLE = 6
# The identifying UIDs every instance needs in one valid form; Frame of Reference only if present.
_IDENTIFYING_UIDS = ((0x00080016, "SOPClassUID"), (0x00080018, "SOPInstanceUID"), (0x0020000D, "StudyInstanceUID"),
                     (0x0020000E, "SeriesInstanceUID"), (0x00200052, "FrameOfReferenceUID"))


def verify(ds: Dataset, policy: Policy, identity: Identity, encoded: bytes | Encoded | None = None) -> list[Finding]:
    """Findings that forbid the instance to leave; [] means clean. Pass the exact bytes that
    will be written as `encoded` to check those (otherwise the dataset is encoded here)."""
    findings: list[Finding] = []
    if ds.get("PatientIdentityRemoved") != "YES":
        findings.append(Finding("(0012,0062)", "(0012,0062)", "PatientIdentityRemoved", "CS",
                                "Patient Identity Removed is not YES", "verify"))
    findings += uid_form(ds)
    findings += _Checker(policy, str(ds.get("SOPClassUID", ""))).check(ds, (), "")
    if encoded is None:
        encoded = encode_parts(ds)
    charsets: set[str] = set()
    decoded = decoded_leaks(ds, identity, charsets)
    leaks = leaked_values(encoded, _bulk_values(ds), identity, policy, sorted(charsets))
    seen = {f.value for f in leaks}
    return findings + leaks + [f for f in decoded if f.value not in seen]


def decoded_leaks(ds: Dataset, identity: Identity, charsets: set[str], where: str = "") -> list[Finding]:
    """Identity values in decoded text, at any depth. Plain ASCII bytes are left to the byte
    search (there the bytes are the text); anything else is decoded with the data set's
    character set and compared as text. Collects the character sets declared on the way."""
    found: list[Finding] = []
    declared = ds._dict.get(0x00080005)
    if declared is not None:
        charsets.update(str(v) for v in as_list(ds[0x00080005].value) if v is not None)
    matcher = identity.leak_matcher
    for tag in sorted(ds._dict):
        raw = ds._dict[tag]
        vr = raw.VR
        if vr == "SQ" or (vr is None and not isinstance(raw, RawDataElement)):
            elem = ds[tag]
            if elem.VR == "SQ":
                label = f"{where}({tag >> 16:04X},{tag & 0xFFFF:04X})"
                for i, item in enumerate(elem.value or []):
                    found += decoded_leaks(item, identity, charsets, f"{label}[{i}].")
            continue
        if vr not in TEXT_VRS or not matcher:
            continue
        value = raw.value
        if not value:
            continue
        if isinstance(value, bytes):
            if value.isascii() and b"\x1b" not in value:
                continue
        elif all(str(v).isascii() for v in as_list(value)):
            continue
        try:
            text = "\\".join(str(v) for v in as_list(ds[tag].value))
        except Exception:  # noqa: BLE001 -- undecodable text is left to the byte search
            continue
        label = f"{where}({tag >> 16:04X},{tag & 0xFFFF:04X})"
        for needle in matcher.found(text):
            found.append(Finding(label, label[len(where):], ds[tag].keyword or "", vr,
                                 f"original {needle.what} occurs in the output (decoded text)", "verify",
                                 needle.value))
    return found


def uid_form(ds: Dataset) -> list[Finding]:
    """Findings for identifying UIDs (top level) that are missing, multi-valued or not valid."""
    found = []
    for tag, keyword in _IDENTIFYING_UIDS:
        tag_text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if tag not in ds:
            if keyword != "FrameOfReferenceUID":
                found.append(Finding(tag_text, tag_text, keyword, "UI", f"{keyword} is missing", "verify"))
            continue
        value = ds[tag].value
        if isinstance(value, MultiValue | list):
            reason = f"{keyword} has {len(value)} values, not one"
        elif not value or not UID(str(value)).is_valid:
            reason = f"{keyword} is not a valid UID"
        elif tag == 0x00080016 and not is_standard(str(value)):
            reason = "SOPClassUID is not a SOP class of the standard"
        else:
            continue
        found.append(Finding(tag_text, tag_text, keyword, "UI", reason, "verify", value))
    return found


class _Checker:
    def __init__(self, policy: Policy, sop_class: str) -> None:
        self.policy = policy
        self.public_overrides = public_overrides(policy.overrides)
        self.options = policy.options
        self.retain_uids = "retain_uids" in policy.options
        self.sop_class = sop_class
        self.tables = profile.tables()
        overlay = self.tables.by_repeating_element.get((0x6000, 0x3000))
        self.drop_overlays = overlay is not None and overlay.action(self.options)[0] == "X"

    def check(self, ds: Dataset, seq_path: tuple[str, ...], where: str) -> list[Finding]:
        found: list[Finding] = []
        plain = _plain_raw_allowed()
        for tag in sorted(ds._dict):  # the order `for elem in ds` gives
            raw = ds._dict[tag]
            elem = _RawView(ds, raw) if plain and _is_plain_raw(raw) else ds[tag]
            reason = self._problem(ds, elem, seq_path)
            if not reason and elem.VR != "SQ":
                continue
            tag = int(elem.tag)
            tag_text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
            path = f"{where}{tag_text}"
            if reason:
                found.append(Finding(path, tag_text, elem.keyword or "", elem.VR, reason, "verify", elem.value))
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value or []):
                    found += self.check(item, seq_path + (elem.keyword or tag_text,), f"{path}[{i}].")
        return found

    def _problem(self, ds: Dataset, elem, seq_path: tuple[str, ...]) -> str | None:
        """Why `elem` must not be in the output, or None."""
        reason = self._structure(ds, elem, seq_path)
        if reason is None and elem.VR == "UI" and not self.retain_uids and not self._uids_allowed(elem):
            return "UID neither the standard's own nor a pseudonym"
        return reason

    def _uids_allowed(self, elem) -> bool:
        """Every value of the UI element is empty, the standard's own or a pseudonym (a site's
        `replace` override sets a value of its own)."""
        raw = getattr(elem, "raw", None)
        if raw is not None and raw_all_standard(raw.value):
            return True  # checked in the raw bytes, not converted
        override = self.public_overrides.get(int(elem.tag))
        if override is not None and override.action == "replace":
            return True
        return all(not v or is_standard(v) or is_pseudonym(v)
                   for v in (str(v).strip() for v in as_list(elem.value) if v is not None))

    def _structure(self, ds: Dataset, elem, seq_path: tuple[str, ...]) -> str | None:
        tag = int(elem.tag)
        group, el = tag >> 16, tag & 0xFFFF
        if group % 2 == 1:
            if 0x0010 <= el <= 0x00FF or self._private_allowed(ds, group, el):
                return None
            return "private element the policy does not allow"
        if profile.repeating_base(group) is not None:
            return "overlay or curve data the policy removes" if self._repeating_removed(group, el) else None
        override = self.public_overrides.get(tag)
        if override is not None:
            return "still present, a site override removes it" if override.action == "remove" else None
        rule = self.tables.by_tag.get(tag)
        if rule is None:
            if tag not in DicomDictionary and mask_match(tag) is None:
                return "public element the data dictionary does not define"
            return None
        code, reason = rule.action(self.options)
        code = profile.resolve(code, self.sop_class, seq_path + (elem.keyword or "",), self.policy.references)
        if code == "X":
            return f"still present, policy removes it ({reason}: X)"
        return None

    def _private_allowed(self, ds: Dataset, group: int, el: int) -> bool:
        creator_elem = ds.get((group << 16) | (el >> 8))
        if creator_elem is None:
            return False
        creator = str(creator_elem.value or "").strip()
        override = self.policy.overrides.get(OverrideKey(group=group, creator=creator, element=el & 0xFF))
        if override is not None:
            return override.action != "remove"
        return "retain_safe_private" in self.options and \
            (group, creator.upper(), el & 0xFF) in self.tables.safe_private

    def _repeating_removed(self, group: int, el: int) -> bool:
        base = profile.repeating_base(group)
        rule = self.tables.by_repeating_element.get((base, el)) or self.tables.whole_repeating_group.get(base)
        if rule is None:
            return base == 0x6000 and self.drop_overlays
        return rule.action(self.options)[0] == "X"


_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "PN", "SH", "SL", "SS",
                        "ST", "TM", "UC", "UI", "UL", "UR", "US", "UT"})


def _plain_raw_allowed() -> bool:
    """Whether a raw element of a plain VR converts to a DataElement of the same VR without
    raising (pydicom's defaults): then the check reads its value only when it needs it."""
    from pydicom import config

    return config.settings.reading_validation_mode != config.RAISE and not config.convert_wrong_length_to_UN


def _is_plain_raw(raw) -> bool:
    return (type(raw) is RawDataElement and raw.VR in _PLAIN_VRS and not raw.is_implicit_VR
            and not raw.tag >> 16 & 1)


class _RawView:
    """A not yet converted public element of an explicit plain VR, as the check sees it: the
    same tag, VR and keyword the converted element has; its value converted on first use."""

    __slots__ = ("ds", "raw", "tag", "VR", "keyword")

    def __init__(self, ds: Dataset, raw: RawDataElement) -> None:
        self.ds, self.raw, self.tag, self.VR = ds, raw, raw.tag, raw.VR
        self.keyword = dictionary_keyword(raw.tag) if dictionary_has_tag(raw.tag) else ""  # DataElement.keyword

    @property
    def value(self):
        return self.ds[self.tag].value


def _bulk_values(ds: Dataset) -> list[bytes]:
    values = [ds.get_item(t).value for t in _BULK_TAGS[:3] if t in ds]
    for item in ds.get("EncryptedAttributesSequence", []) or []:
        if "EncryptedContent" in item:
            values.append(item.EncryptedContent)
    return [v for v in values if isinstance(v, bytes) and v]


def leaked_values(encoded: bytes | Encoded, bulk: list[bytes], identity: Identity, policy: Policy,
                  charsets: list[str] | tuple[str, ...] = ()) -> list[Finding]:
    """Findings for identity values that occur in `encoded`, each value searched for in every
    form `matching.byte_forms` gives for the declared `charsets` (and UTF-8 and Latin-1). The
    header bytes are searched for every value; the bulk values (pixels, ciphertext) only for
    values of six or more characters (a short one would match there by chance), and for the
    birth date only as YYYYMMDD."""
    needles = identity.needles()
    if "retain_uids" not in policy.options:
        needles += [("original UID", u) for u in identity.uids]
    if not needles:
        return []
    encodings = python_encodings(tuple(charsets))
    header_text, located = _split_bulk(encoded, bulk)
    forms = [sorted(byte_forms(value, encodings)) for _, value in needles]
    header_hits = [any(f in header_text and _needle_pattern(what, value, f).search(header_text) is not None
                       for f in fs)
                   for (what, value), fs in zip(needles, forms, strict=True)]
    # each located bulk value is searched lower-cased a chunk at a time (_BulkText)
    longest = max((len(f) for fs in forms for f in fs), default=0)
    bulk = _BulkSearch([_BulkText(v, longest) for v in located])
    wanted = [i for i, (what, value) in enumerate(needles) if not header_hits[i] and len(value) >= _MIN_BULK_NEEDLE
              and (what != "birth date" or value.isdigit())]
    bulk.rule_out([f for i in wanted for f in forms[i]],
                  [f for i in wanted if needles[i][0] == "original UID" for f in forms[i]])
    found: list[Finding] = []
    for i, (what, value) in enumerate(needles):
        hit = header_hits[i] or (i in wanted and any(
            bulk.holds(f, lambda w=what, v=value, f=f: _needle_pattern(w, v, f)) for f in forms[i]))
        if hit:
            found.append(Finding("(encoded bytes)", "", "", "", f"original {what} occurs in the output",
                                 "verify", value))
    return found


class _BulkSearch:
    """Searches of the (lower-cased) bulk values. A needle is searched for as before (substring,
    then its pattern), but a needle that contains a string known to be absent from every bulk
    value cannot be there either: searching the shorter needles (and the common prefix of the
    original UIDs) first rules most of the 512 KB scans out."""

    _MIN_PREFIX = 8

    def __init__(self, texts: list[_BulkText]) -> None:
        self.texts = texts
        self.absent: set[bytes] = set()
        self.present: set[bytes] = set()

    def _absent(self, text: bytes) -> bool:
        if text in self.present:
            return False
        if text in self.absent or any(a in text for a in self.absent):
            return True
        if any(text in b for b in self.texts):
            self.present.add(text)
            return False
        self.absent.add(text)
        return True

    def rule_out(self, needles: list[bytes], uids: list[bytes]) -> None:
        prefix = os.path.commonprefix(uids) if len(uids) > 1 else b""
        for text in self.texts:  # one pass over a large value answers every needle
            text.prefetch([*needles, *([prefix] if len(prefix) >= self._MIN_PREFIX else [])])
        if len(prefix) >= self._MIN_PREFIX:
            self._absent(prefix)
        for needle in sorted(set(needles), key=len):
            self._absent(needle)

    def holds(self, needle: bytes, pattern) -> bool:
        """What `any(needle in b and pattern.search(b) for b in texts)` gives."""
        if self._absent(needle):
            return False
        compiled = pattern()
        return any(needle in b and b.search(compiled) for b in self.texts)


_BULK_CHUNK = 8 * 1024 * 1024


class _BulkText:
    """One bulk value, searched lower-cased (`needle in text`, `text.search(pattern)`). A value
    of up to _BULK_CHUNK bytes is lowered once, whole; a larger one (the pixel data of a
    multi-frame instance) a window at a time, never as a lowered copy of the whole. Windows
    overlap by the longest needle and two bytes of context, so every occurrence lies whole,
    with the bytes either side of it, in some window; a pattern match that touches a window's
    edge inside the value is not taken (its context is cut off) and is found in the next."""

    def __init__(self, value: bytes, longest: int) -> None:
        self.value = value
        self.overlap = longest + 2
        self.whole = value.lower() if len(value) <= _BULK_CHUNK else None
        self.known: dict[bytes, bool] = {}

    def _windows(self):
        view, size = memoryview(self.value), len(self.value)
        for start in range(0, size, _BULK_CHUNK):
            end = min(size, start + _BULK_CHUNK + self.overlap)
            yield start, end, bytes(view[start:end]).lower()
            if end == size:
                return

    def prefetch(self, needles: list[bytes]) -> None:
        if self.whole is not None:
            return
        wanted = {n for n in needles if n not in self.known and len(n) <= self.overlap - 2}
        found: set[bytes] = set()
        for _, _, text in self._windows():
            found |= {n for n in wanted - found if n in text}
        self.known.update((n, n in found) for n in wanted)

    def __contains__(self, needle: bytes) -> bool:
        if self.whole is not None:
            return needle in self.whole
        if needle not in self.known:
            if len(needle) > self.overlap - 2:  # longer than the windows overlap: not split across one
                self.known[needle] = needle in self.value.lower()
            else:
                self.prefetch([needle])
        return self.known[needle]

    def search(self, compiled: re.Pattern[bytes]) -> bool:
        if self.whole is not None:
            return compiled.search(self.whole) is not None
        size = len(self.value)
        for start, end, text in self._windows():
            match = compiled.search(text)
            while match is not None:
                if (match.start() > 0 or start == 0) and (match.end() < len(text) or end == size):
                    return True
                match = compiled.search(text, match.start() + 1)
        return False


def _split_bulk(encoded: bytes | Encoded, bulk: list[bytes]) -> tuple[bytes, list[bytes]]:
    """The header bytes (lower-cased, a NUL where each bulk value was cut out: no match spans
    one) and the bulk values found in `encoded`. In an `Encoded`, a bulk value is its own
    piece (the pixel data: not copied) or inside one (the ciphertext in its sequence)."""
    parts = encoded.parts if isinstance(encoded, Encoded) else [encoded]
    runs: list[list[bytes]] = [[]]
    located: list[bytes] = []
    remaining = list(bulk)
    for part in parts:
        whole = next((v for v in remaining if _is_value(part, v)), None)
        if whole is not None:
            remaining.remove(whole)
            located.append(whole)
            runs.append([])
            continue
        cuts = [(r, v) for r, v in ((_locate(part, v), v) for v in remaining if len(v) <= len(part)) if r]
        last = 0
        for (start, end), value in sorted(cuts, key=lambda c: c[0]):
            remaining.remove(value)
            located.append(value)
            runs[-1].append(part[last:start])
            runs.append([])
            last = max(last, end)
        runs[-1].append(part[last:] if last else part)
    return b"\x00".join(b"".join(run) for run in runs).lower(), located


def _is_value(part: bytes, value: bytes) -> bool:
    """`part` is the encoded value `value` (padded to even length), compared without a copy."""
    if part is value:
        return True
    if len(part) not in (len(value), len(value) + 1) or len(value) < 1024:
        return False
    return memoryview(part)[:len(value)] == value


def _locate(encoded: bytes, value: bytes) -> tuple[int, int] | None:
    start = encoded.rfind(value) if len(value) < 1 << 16 else _tail_or_find(encoded, value)
    return (start, start + len(value)) if start >= 0 else None


def _tail_or_find(encoded: bytes, value: bytes) -> int:
    """Pixel data is almost always the last element: check the tail before searching."""
    if encoded.endswith(value):
        return len(encoded) - len(value)
    if memoryview(encoded)[-len(value) - 1:-1] == value:  # an odd value padded to even length (no copy)
        return len(encoded) - len(value) - 1
    return encoded.rfind(value)


def _needle_pattern(what: str, value: str, form: bytes | None = None) -> re.Pattern[bytes]:
    """Names match as whole words ("Pre" is not in "PREDECESSOR"), dates and all-digit IDs as
    whole numbers, UIDs as whole UIDs, IDs with letters anywhere. `form` is the (lower-cased)
    encoded form searched for; the word edges are tested only where both it and the value are
    ASCII (in a multi-byte encoding a neighbouring byte says nothing of a word edge)."""
    body = re.escape(form if form is not None else value.lower().encode("utf-8", "replace"))
    if what.startswith("patient name") and not (value.isascii() and (form is None or form.isascii())):
        return re.compile(body)
    if what.startswith("patient name"):
        return re.compile(rb"(?<![a-z])" + body + rb"(?![a-z])")
    if what == "birth date":
        return re.compile(rb"(?<![0-9])" + body + rb"(?![0-9])")
    if what == "original UID":
        return re.compile(rb"(?<![0-9.])" + body + rb"(?![0-9.])")
    if value.isdigit():
        return re.compile(rb"(?<![0-9])" + body + rb"(?![0-9])")
    return re.compile(body)
