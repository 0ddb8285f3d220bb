"""The de-identification engine: one dataset and a policy in, a new dataset and a record of
every change out. Pure: no files, no clock, no logging; the input dataset is not modified.

Every element at every depth gets one action:

- a site override, if the policy has one for it;
- private elements: removed, unless Retain Safe Private is on and Table E.3.10-1 lists the
  element for its private creator;
- overlay and curve groups (60xx, 50xx): by the table's range rules; when Overlay Data is
  removed the rest of its group goes with it, so no half overlay is left behind;
- attributes of Table E.1-1: the Basic Profile's action, or the action of an option in force;
  combined codes resolve by the attribute's type in the instance's IOD (Type 1 -> D,
  Type 2 -> Z, else the first code; X/Z/U*, the reference sequences, are kept with their items
  de-identified and UIDs replaced, unless the policy's `references` is "remove");
- public elements the data dictionary does not define: removed, like private ones; a dictionary
  element whose VR in the file is not the dictionary's is read as the dictionary's VR, or removed
  if its value cannot be;
- anything else is kept; sequences are always walked, so nested attributes get the same rules.

Every UID that is not the standard's own (uids.py) is replaced by its pseudonym, wherever it
sits and whatever its element (unless Retain UIDs is on): the replacement is the same
everywhere, so references between instances resolve.

Inside a sequence whose action is D (e.g. Content Sequence) free text that the table does not
list is replaced by a dummy; inside a C sequence (Clean Structured Content / Graphics) it is
cleaned of identifying spans instead.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from pydicom.datadict import DicomDictionary, dictionary_VR, keyword_for_tag, mask_match
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRLittleEndian
from pydicom.valuerep import validate_value
from pydicom.values import convert_value

from gantry_node.engine.deid import profile
from gantry_node.engine.deid.identity import Identity, clean_text
from gantry_node.engine.deid.markers import apply_markers, constant_element
from gantry_node.engine.deid.policy import Override, OverrideKey, Policy, public_overrides
from gantry_node.engine.deid.pseudonyms import Keys
from gantry_node.engine.deid.uids import needs_replacing, raw_all_standard
from gantry_node.engine.deid.values import (
    CODE_ATTRIBUTES,
    MAX_LENGTH,
    TEXT_VRS,
    UnparsableDate,
    as_list,
    dummy_value,
    empty_value,
    shift_da,
    shift_dt,
)
from gantry_node.engine.errors import SafeMessage
from gantry_node.version import __version__

IMPLEMENTATION_CLASS_UID = "2.25.209741618398735281936925651036127462977"
IMPLEMENTATION_VERSION_NAME = f"GANTRY_{__version__}"[:16]

_MARKER_TAGS = (0x00120062, 0x00120063, 0x00120064, 0x00280303)
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020


class DeidError(SafeMessage, ValueError):
    """An element that cannot be de-identified; the message names the tag, never the value."""


@dataclass(frozen=True)
class Change:
    """One element the engine changed. `path` names the element (sequence items included)."""

    path: str
    tag: int
    keyword: str
    vr: str
    action: str  # X remove, Z empty, D dummy, U uid, C clean, shift, pseudonymize, replace
    reason: str  # what asked for it: "basic profile: X", "option clean_descriptors: C", ...
    original: object = field(default=None, repr=False, compare=False)  # in memory only

    @property
    def tag_text(self) -> str:
        return f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"


@dataclass
class DeidResult:
    dataset: Dataset
    changes: list[Change]
    originals: Dataset  # the original top-level elements that were changed (PS3.15 E.1.2)
    identity: Identity = field(repr=False)


def deidentify(ds: Dataset, policy: Policy, keys: Keys) -> DeidResult:
    """De-identify `ds` under `policy`, with pseudonyms keyed by `keys`. The input is unchanged."""
    walk = _Walk(ds, policy, keys)
    out = walk.dataset(ds, (), "", "profile")
    apply_markers(out, policy)
    sop_class = out.get("SOPClassUID")
    sop_instance = out.get("SOPInstanceUID")
    if not sop_class or not sop_instance:
        raise DeidError("(0008,0016)/(0008,0018): SOP Class and SOP Instance UID are required")
    source_meta = getattr(ds, "file_meta", None)
    out.file_meta = new_file_meta(
        sop_class, sop_instance, source_meta.get("TransferSyntaxUID") if source_meta else None
    )
    # markers an earlier de-identification left are replaced: keep their originals too
    walk.changed_top.update(t for t in _MARKER_TAGS if t in ds)
    originals = Dataset()
    for tag in sorted(walk.changed_top):
        originals[tag] = ds[tag]
    return DeidResult(out, walk.changes, originals, walk.identity)


def new_file_meta(sop_class: str, sop_instance: str, transfer_syntax: str | None) -> FileMetaDataset:
    meta = FileMetaDataset()
    # what meta.FileMetaInformationVersion = ... and so on set, without the keyword lookups; our
    # own constants are not validated again
    meta[0x00020001] = constant_element(0x00020001, "OB", b"\x00\x01")
    meta[0x00020002] = DataElement(0x00020002, "UI", sop_class)
    meta[0x00020003] = DataElement(0x00020003, "UI", sop_instance)
    meta[0x00020010] = DataElement(0x00020010, "UI", transfer_syntax or ExplicitVRLittleEndian)
    meta[0x00020012] = constant_element(0x00020012, "UI", IMPLEMENTATION_CLASS_UID)
    meta[0x00020013] = constant_element(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME)
    return meta


class _Walk:
    def __init__(self, ds: Dataset, policy: Policy, keys: Keys) -> None:
        self.policy = policy
        self.public_overrides = public_overrides(policy.overrides)
        self.keys = keys
        self.tables = profile.tables()
        self.options = policy.options
        self.retain_uids = "retain_uids" in policy.options
        self.sop_class = str(ds.get("SOPClassUID", ""))
        self.identity = Identity.of(ds, policy.not_identifying)
        self.dates = policy.date_handling
        self.offset = keys.date_offset(self.identity.patient_key, policy.date_shift_days)
        self.changes: list[Change] = []
        self.changed_top: set[int] = set()
        self._top: int | None = None
        self.original_patient_id = str(ds.get("PatientID", "") or "").strip()
        self.matcher = self.identity.leak_matcher
        overlay_rule = self.tables.by_repeating_element.get((0x6000, 0x3000))
        self.drop_overlays = overlay_rule is not None and overlay_rule.action(self.options)[0] == "X"

    # -- recording -----------------------------------------------------------------------
    def record(self, path: str, tag: int, vr: str, action: str, reason: str, original=None) -> None:
        self.changes.append(Change(path, tag, keyword_for_tag(tag) or "", vr, action, reason, original))
        if self._top is not None:
            self.changed_top.add(self._top)

    def holds_identity(self, element: DataElement) -> bool:
        """Whether a decoded text value holds one of this patient's identity values (compared
        as text: any case, any character set; clean_text then replaces the spans)."""
        value = element.value
        if not value or not self.matcher:
            return False
        return self.matcher.holds("\\".join(str(v) for v in as_list(value)))

    def raw_holds_identity(self, ds: Dataset, tag: int, raw: DataElement | RawDataElement) -> bool:
        """holds_identity for an element that may not be decoded yet. Plain ASCII bytes (no ISO
        2022 escape) are their own text, so they are tested without decoding; anything else is
        decoded with the data set's character set first."""
        if isinstance(raw, RawDataElement):
            if not raw.value or not self.matcher:
                return False
            if raw.value.isascii() and b"\x1b" not in raw.value:
                return self.matcher.maybe_in_ascii(raw.value)
            return self.holds_identity(ds[tag])
        return self.holds_identity(raw)

    # -- structure -----------------------------------------------------------------------
    def dataset(self, ds: Dataset, seq_path: tuple[str, ...], where: str, mode: str) -> Dataset:
        out = Dataset()
        creators: dict[tuple[int, int], str] = {}
        kept_blocks: set[tuple[int, int]] = set()
        deferred_creators: dict[int, DataElement | RawDataElement] = {}
        for raw in ds.elements():
            tag = raw.tag if type(raw.tag) is BaseTag else Tag(raw.tag)
            if not seq_path:
                self._top = tag
            group, elem = tag >> 16, tag & 0xFFFF
            if elem == 0:  # group lengths are retired (PS3.5 7.2): never carried over, nothing to seal
                continue
            if group == 0x0002:
                continue
            path = f"{where}{_tag_text(tag)}"
            if group % 2 == 1:
                if 0x0010 <= elem <= 0x00FF:
                    creators[(group, elem)] = str(ds[tag].value or "").strip()
                    deferred_creators[tag] = raw
                    continue
                kept = self.private(ds, tag, group, elem, creators, path, seq_path, mode, out)
                if kept:
                    kept_blocks.add((group, elem >> 8))
                continue
            base = profile.repeating_base(group) if 0x5000 <= group <= 0x601E else None
            if base is not None:
                self.repeating(ds, tag, base, path, seq_path, mode, out)
                continue
            self.public(ds, tag, raw, path, seq_path, mode, out)
        for tag, raw in deferred_creators.items():
            if not seq_path:
                self._top = tag
            if (tag.group, tag.element) in kept_blocks:
                out[tag] = raw if isinstance(raw, RawDataElement) else copy.copy(raw)
            else:
                self.record(f"{where}{_tag_text(tag)}", tag, "LO", "X", "private creator of removed block")
        return out

    def private(self, ds, tag, group, elem, creators, path, seq_path, mode, out) -> bool:
        creator = creators.get((group, elem >> 8))
        element = ds[tag]
        if creator is None:
            self.record(path, tag, element.VR, "X", "private element without creator")
            return False
        override = self.policy.overrides.get(OverrideKey(group=group, creator=creator, element=elem & 0xFF))
        if override is not None:
            return self.apply_override(element, override, path, seq_path, mode, out)
        if "retain_safe_private" in self.options:
            vr = self.tables.safe_private.get((group, creator.upper(), elem & 0xFF))
            if vr is not None:
                if element.VR == "UN" and vr not in ("", "UN"):
                    # Read implicitly: give it the VR the table documents, so it stays usable.
                    element = _convert_un(element, vr, ds)
                    if element.VR == "UN":  # its value does not fit that VR: not the safe element
                        self.record(path, tag, "UN", "X", "private: value does not fit its Table E.3.10-1 VR",
                                    element.value)
                        return False
                self.keep(element, path, seq_path, mode, out)
                return True
            self.record(path, tag, element.VR, "X", "private: not in Table E.3.10-1 safe list",
                        element.value)
            return False
        self.record(path, tag, element.VR, "X", "basic profile: private attributes X", element.value)
        return False

    def repeating(self, ds, tag, base, path, seq_path, mode, out) -> None:
        element = ds[tag]
        rule = self.tables.by_repeating_element.get((base, tag.element))
        if rule is None:
            rule = self.tables.whole_repeating_group.get(base)
        if rule is None and base == 0x6000 and self.drop_overlays:
            self.record(path, tag, element.VR, "X", "overlay group removed with its Overlay Data")
            return
        if rule is None:
            self.keep(element, path, seq_path, mode, out)
            return
        code, reason = rule.action(self.options)
        self.apply(element, code, reason, path, seq_path, mode, out)

    def public(self, ds, tag, raw, path, seq_path, mode, out) -> None:
        itag = int(tag)
        override = self.public_overrides.get(itag)
        rule = self.tables.by_tag.get(itag)
        entry = DicomDictionary.get(itag)
        element = None  # the element as the dictionary defines it, once read
        if entry is None:
            if override is None and rule is None and mask_match(itag) is None:
                self.record(path, tag, raw.VR or "UN", "X", "public element the data dictionary does not define",
                            raw.value)
                return
        elif (file_vr := raw.VR) and file_vr != entry[0] and _vr_differs(file_vr, entry[0]):
            element = _as_dictionary_vr(ds, tag, raw, entry[0])
            if element is None:
                self.record(path, tag, file_vr, "X", f"VR {file_vr} is not the dictionary's {entry[0]} and the "
                            "value cannot be read as it", raw.value)
                return
        if override is None and rule is None:
            vr = (element.VR if element is not None else raw.VR) or (entry[0] if entry else "UN")
            if vr == "UI":
                if element is None and (self.retain_uids or (
                        isinstance(raw, RawDataElement) and raw_all_standard(raw.value))):
                    _put(out, tag, raw)
                else:  # a UID not the standard's own, whatever its element (principle 9)
                    self.replace_uids(ds[tag] if element is None else element, path,
                                      "UID not the standard's own", out)
            elif itag in CODE_ATTRIBUTES:
                _put(out, tag, raw if element is None else element)
            elif vr == "SQ" or vr in ("DA", "DT") or (
                    vr in TEXT_VRS and (mode != "profile" or (
                        self.raw_holds_identity(ds, tag, raw) if element is None else self.holds_identity(element)))):
                self.keep(ds[tag] if element is None else element, path, seq_path, mode, out, unlisted=True)
            elif element is not None:
                out[tag] = element
            else:  # untouched: share the immutable raw element (or a copy) without decoding it
                _put(out, tag, raw)
            return
        if element is None:
            element = ds[tag]
        if override is not None:
            self.apply_override(element, override, path, seq_path, mode, out)
            return
        code, reason = rule.action(self.options)
        if code == "Z" and itag == _PATIENT_NAME and self.policy.pseudonymize_patient_name:
            self.set(out, element, self.patient_pseudonym(), path, "pseudonymize",
                     f"{reason}: Z, pseudonymous patient ID as name")
            return
        self.apply(element, code, reason, path, seq_path, mode, out)

    # -- actions -------------------------------------------------------------------------
    def apply(self, element, code, reason, path, seq_path, mode, out) -> None:
        vr = element.VR
        code = profile.resolve(code, self.sop_class, seq_path + (element.keyword or "",), self.policy.references)
        why = f"{reason}: {code}"
        if code == "X":
            self.record(path, element.tag, vr, "X", why, element.value)
        elif code == "Z":
            if not _is_empty(element):
                self.set(out, element, empty_value(vr), path, "Z", why)
            else:
                out[element.tag] = copy.copy(element)
        elif code == "D":
            if vr == "SQ":
                self.sequence(element, path, seq_path, "dummy", out)
            elif vr == "UI":
                self.replace_uids(element, path, why, out)
            elif vr in ("DA", "DT") and self.dates != "REMOVED":
                self.keep(element, path, seq_path, mode, out)
            else:
                self.set(out, element, dummy_value(vr), path, "D", why)
        elif code in ("K", "U*"):
            self.keep(element, path, seq_path, mode, out)
        elif code == "U":
            if vr == "SQ":
                self.sequence(element, path, seq_path, mode, out)
            elif _is_empty(element):
                out[element.tag] = copy.copy(element)
            else:
                self.replace_uids(element, path, why, out)
        elif code == "C":
            self.clean(element, path, seq_path, why, out)
        else:
            raise DeidError(f"{path}: unknown action {code!r}")

    def keep(self, element, path, seq_path, mode, out, unlisted: bool = False) -> None:
        vr = element.VR
        if vr == "SQ":
            self.sequence(element, path, seq_path, mode, out)
        elif vr == "UI" and not self.retain_uids:
            self.replace_uids(element, path, "kept, UID not the standard's own replaced", out)
        elif vr in ("DA", "DT") and self.dates == "MODIFIED" and not _is_empty(element):
            self.shift(element, path, out, "dates shifted by the patient's offset")
        elif unlisted and mode == "dummy" and vr in TEXT_VRS and not _is_empty(element):
            self.set(out, element, dummy_value(vr), path, "D", "free text inside a D sequence")
        elif unlisted and mode == "clean" and vr in TEXT_VRS and not _is_empty(element):
            self.clean(element, path, seq_path, "free text inside a C sequence", out)
        elif vr in TEXT_VRS and self.holds_identity(element):
            self.clean(element, path, seq_path, "kept free text holding the patient's identity", out)
        else:
            out[element.tag] = copy.copy(element)

    def sequence(self, element, path, seq_path, mode, out) -> None:
        keyword = element.keyword or _tag_text(element.tag)
        items = Sequence()
        for i, item in enumerate(element.value or []):
            items.append(self.dataset(item, seq_path + (keyword,), f"{path}[{i}].", mode))
        out.add(DataElement(element.tag, "SQ", items))

    def clean(self, element, path, seq_path, why, out) -> None:
        vr = element.VR
        if vr == "SQ":
            self.sequence(element, path, seq_path, "clean", out)
        elif vr in ("DA", "DT"):
            if self.dates == "MODIFIED":
                self.shift(element, path, out, why)
            else:
                out[element.tag] = copy.copy(element)
        elif vr == "PN" and not _is_empty(element):
            self.set(out, element, dummy_value("PN"), path, "D", why)
        elif vr in TEXT_VRS and not _is_empty(element):
            values = as_list(element.value)
            cleaned = [clean_text(str(v), self.identity) for v in values]
            if any(reasons for _, reasons in cleaned):
                reasons = sorted({r for _, rs in cleaned for r in rs})
                new = [t for t, _ in cleaned]
                self.set(out, element, new if len(new) > 1 else new[0], path, "C",
                         f"{why} ({', '.join(reasons)})")
            else:
                out[element.tag] = copy.copy(element)
        else:
            out[element.tag] = copy.copy(element)

    def shift(self, element, path, out, why) -> None:
        fn = shift_da if element.VR == "DA" else shift_dt
        try:
            new = [fn(str(v), self.offset) for v in as_list(element.value)]
        except UnparsableDate:
            self.set(out, element, empty_value(element.VR), path, "Z", f"{why}; unparsable date emptied")
            return
        self.set(out, element, new if len(new) > 1 else new[0], path, "shift", why)

    def apply_override(self, element, override: Override, path, seq_path, mode, out) -> bool:
        vr, why = element.VR, f"site override: {override.action}"
        if override.action == "keep":
            self.keep(element, path, seq_path, mode, out)
        elif override.action == "remove":
            self.record(path, element.tag, vr, "X", why, element.value)
            return False
        elif override.action == "empty":
            self.set(out, element, empty_value(vr), path, "Z", why)
        elif override.action == "replace":
            self.set(out, element, override.value, path, "replace", why)
        elif override.action == "pseudonymize":
            if _is_empty(element):
                out[element.tag] = copy.copy(element)
            elif vr == "UI":
                self.set(out, element, self.uids(element.value), path, "U", why)
            elif vr == "SQ":
                raise DeidError(f"{path}: a sequence cannot be pseudonymized")
            else:
                domain = element.keyword or _tag_text(element.tag)
                length = min(16, MAX_LENGTH.get(vr, 16))
                new = [self.keys.identifier(domain, str(v), length) for v in as_list(element.value)]
                self.set(out, element, new if len(new) > 1 else new[0], path, "pseudonymize", why)
        return True

    # -- values --------------------------------------------------------------------------
    def set(self, out, element, value, path, action, reason) -> None:
        try:
            out.add(DataElement(element.tag, element.VR, value))
        except (ValueError, TypeError) as exc:
            raise DeidError(f"{path}: cannot set the {element.VR} value: {exc}") from None
        self.record(path, element.tag, element.VR, action, reason, element.value)

    def uids(self, value):
        """Each UID's pseudonym; the standard's own UIDs (uids.py) stay as they are."""
        new = [self.keys.uid(str(v)) if needs_replacing(str(v)) else str(v).strip()
               for v in as_list(value) if str(v).strip()]
        return new if len(new) != 1 else new[0]

    def replace_uids(self, element, path, why, out) -> None:
        """The UI element with every UID that is not the standard's own replaced by its pseudonym;
        unchanged (and not recorded) when it holds none."""
        if any(needs_replacing(str(v)) for v in as_list(element.value) if v is not None):
            self.set(out, element, self.uids(element.value), path, "U", why)
        else:
            out[element.tag] = copy.copy(element)

    def patient_pseudonym(self) -> str:
        if self.original_patient_id:
            return self.keys.identifier("PatientID", self.original_patient_id)
        return self.keys.identifier("PatientName", self.identity.patient_key)



def _put(out: Dataset, tag, elem: DataElement | RawDataElement) -> None:
    """`out[tag] = elem` (a raw element shared: immutable; a DataElement copied) for a public
    element of the walk's new dataset. Where Dataset.__setitem__ would only store it (a public
    tag, not a sequence DataElement; the new dataset has no pixel array to reset), it is stored."""
    if type(elem) is RawDataElement:
        if type(tag) is BaseTag and elem.tag is tag:
            out._dict[tag] = elem
            return
    else:
        elem = copy.copy(elem)
    out[tag] = elem


def _is_empty(element: DataElement) -> bool:
    value = element.value
    return value is None or value == "" or value == b"" or (isinstance(value, list | Sequence) and not value)


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _dictionary_vr(tag) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
                         "UI", "UR", "UT"})


def _vr_differs(file_vr: str, dictionary_vr: str) -> bool:
    return " or " not in file_vr and file_vr not in dictionary_vr.split(" or ")


def _as_dictionary_vr(ds: Dataset, tag, raw, dictionary_vr: str) -> DataElement | None:
    """The element read as the dictionary's VR (the first of an ambiguous one; for UN the one
    pydicom picks), or None if its value is not a valid value of that VR."""
    wanted = dictionary_vr.split(" or ")[0]
    try:
        if raw.VR == "UN":
            element = ds[tag]  # pydicom reads UN of a dictionary tag as the dictionary's VR
            if element.VR == "UN":
                return None
        elif "SQ" in (wanted, raw.VR):
            return None
        elif isinstance(raw, RawDataElement):
            again = RawDataElement(raw.tag, wanted, raw.length, raw.value, raw.value_tell,
                                   raw.is_implicit_VR, raw.is_little_endian)
            element = DataElement(raw.tag, wanted, convert_value(wanted, again, getattr(ds, "_character_set", None)))
        elif isinstance(raw.value, str | bytes):
            element = DataElement(raw.tag, wanted, raw.value)
        else:
            return None
        if element.VR in _STRING_VRS:  # a number VR's value was checked by its conversion
            for v in as_list(element.value):
                if v is not None:  # the text (a DS/IS keeps its original string)
                    validate_value(element.VR, str(v), 2)  # pydicom.config.RAISE: raise if not valid
    except Exception:  # noqa: BLE001 -- a value that does not read as the VR is removed
        return None
    return element


def _convert_un(element: DataElement, vr: str, ds: Dataset) -> DataElement:
    """The UN element decoded as `vr` (little endian), or unchanged if it does not decode."""
    raw = RawDataElement(element.tag, vr, len(element.value or b""), element.value, 0, True, True)
    try:
        return DataElement(element.tag, vr, convert_value(vr, raw, getattr(ds, "_character_set", None)))
    except Exception:  # noqa: BLE001 -- an undecodable value stays UN bytes, still kept
        return element


