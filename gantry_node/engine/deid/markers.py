"""The attributes that say an instance was de-identified and how (PS3.15 E.1.1, CID 7050)."""

from __future__ import annotations

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gantry_node.engine.deid.policy import Policy
from gantry_node.version import __version__

BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA = ("113101", "Clean Pixel Data Option")
OPTION_CODES = {
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_longitudinal_full_dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain_longitudinal_modified_dates": (
        "113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}
# De-identification Method text when the X/Z/U* reference sequences are kept (policy `references`)
REFERENCES_KEPT = "references kept with UIDs replaced"


def method_codes(policy: Policy) -> list[tuple[str, str]]:
    return [BASIC_PROFILE] + [OPTION_CODES[o] for o in sorted(policy.options, key=lambda o: OPTION_CODES[o])]


def add_method_code(ds: Dataset, code: tuple[str, str]) -> None:
    """Add a CID 7050 code to De-identification Method Code Sequence unless already there."""
    seq = ds.get("DeidentificationMethodCodeSequence")
    if seq is None:
        ds.DeidentificationMethodCodeSequence = seq = Sequence()
    if any(item.get("CodeValue") == code[0] and item.get("CodingSchemeDesignator") == "DCM" for item in seq):
        return
    seq.append(_code_item(code))


def _code_item(code: tuple[str, str]) -> Dataset:
    item = Dataset()  # as item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = ... would set them
    item[_CODE_VALUE] = constant_element(_CODE_VALUE, "SH", code[0])
    item[_CODING_SCHEME] = constant_element(_CODING_SCHEME, "SH", "DCM")
    item[_CODE_MEANING] = constant_element(_CODE_MEANING, "LO", code[1])
    return item


def constant_element(tag: int, vr: str, value) -> DataElement:
    """DataElement(tag, vr, value) for a value of our own that is valid for its VR: the same
    element, without validating the constant again for every instance."""
    elem = DataElement(tag, vr, value, validation_mode=config.IGNORE)
    elem.validation_mode = config.settings.reading_validation_mode  # what DataElement(tag, vr, value) keeps
    return elem


def _set(ds: Dataset, tag: int, vr: str, value, constant: bool = False) -> None:
    """`ds.<keyword> = value` without the keyword lookups: a new element of the dictionary's VR,
    or (already there) the element's value replaced."""
    if tag in ds._dict:
        elem = ds[tag]
        elem.value = value
        ds[tag] = elem
    else:
        ds[tag] = constant_element(tag, vr, value) if constant else DataElement(tag, vr, value)


_PATIENT_IDENTITY_REMOVED, _METHOD, _METHOD_CODES, _TEMPORAL = 0x00120062, 0x00120063, 0x00120064, 0x00280303
_CODE_VALUE, _CODING_SCHEME, _CODE_MEANING = 0x00080100, 0x00080102, 0x00080104


def apply_markers(ds: Dataset, policy: Policy) -> None:
    _set(ds, _PATIENT_IDENTITY_REMOVED, "CS", "YES", constant=True)
    codes = method_codes(policy)
    methods = [f"gantry-node {__version__}"] + [meaning[:64] for _, meaning in codes]
    if policy.references == "keep" and "retain_uids" not in policy.options:
        methods.append(REFERENCES_KEPT)
    previous = ds[_METHOD].value if _METHOD in ds._dict else None
    if previous:  # an earlier de-identification stays on record
        earlier = list(previous) if not isinstance(previous, str) else [previous]
        methods = [m for m in earlier if m not in methods] + methods
    _set(ds, _METHOD, "LO", methods, constant=not previous)  # ours alone, or with earlier ones
    if _METHOD_CODES in ds._dict:
        for code in codes:
            add_method_code(ds, code)
    else:  # a new sequence: no code to look for
        seq = Sequence()
        ds[_METHOD_CODES] = DataElement(_METHOD_CODES, "SQ", seq)
        for code in codes:
            seq.append(_code_item(code))
    _set(ds, _TEMPORAL, "CS", policy.date_handling, constant=True)
