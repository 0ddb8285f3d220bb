"""The attributes that say an instance was de-identified and how (PS3.15 E.1.1, CID 7050)."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from gantry_node.deid.policy import Policy
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
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code[0], "DCM", code[1]
    seq.append(item)


def apply_markers(ds: Dataset, policy: Policy) -> None:
    ds.PatientIdentityRemoved = "YES"
    methods = [f"gantry-node {__version__}"] + [meaning[:64] for _, meaning in method_codes(policy)]
    if policy.references == "keep" and "retain_uids" not in policy.options:
        methods.append(REFERENCES_KEPT)
    previous = ds.get("DeidentificationMethod")
    if previous:  # an earlier de-identification stays on record
        earlier = list(previous) if not isinstance(previous, str) else [previous]
        methods = [m for m in earlier if m not in methods] + methods
    ds.DeidentificationMethod = methods
    for code in method_codes(policy):
        add_method_code(ds, code)
    ds.LongitudinalTemporalInformationModified = policy.date_handling
